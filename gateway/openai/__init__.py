"""The OpenAI wire format: `/v1/chat/completions` (unary and SSE), `/v1/models`, `/v1/embeddings` and OpenAI's
error shape, over the same core calls every other transport makes. The official `openai` SDK is the client it
is tested with."""

from aiohttp import web

from .routes import setup_routes

__all__ = ["setup_openai"]


def setup_openai(app: web.Application) -> None:
    setup_routes(app)
