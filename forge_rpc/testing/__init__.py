"""Helpers users and tests share: run a real forge in process on a free port."""

from .server import running_forge

__all__ = ["running_forge"]
