"""REST from the contracts: routes built from google.api.http rules (placeholder until the transcoder lands)."""

from aiohttp import web

__all__ = ["setup_docs", "setup_transcoding"]


def setup_transcoding(app: web.Application) -> None:
    return None


def setup_docs(app: web.Application) -> None:
    return None
