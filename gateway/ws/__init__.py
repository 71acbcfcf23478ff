"""The /ws subscription channel (placeholder until it lands)."""

from aiohttp import web

__all__ = ["setup_ws"]


def setup_ws(app: web.Application) -> None:
    return None
