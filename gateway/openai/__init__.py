"""The OpenAI wire format (placeholder until it lands)."""

from aiohttp import web

__all__ = ["setup_openai"]


def setup_openai(app: web.Application) -> None:
    return None
