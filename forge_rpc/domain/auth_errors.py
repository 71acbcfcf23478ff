"""Errors of account management that errors.py has no factory for."""

from __future__ import annotations

from .errors import ErrorCode, ForgeError

__all__ = ["AlreadyExists"]


def AlreadyExists(detail: str, reason: str = "ALREADY_EXISTS") -> ForgeError:
    return ForgeError(detail, ErrorCode.ALREADY_EXISTS, reason)
