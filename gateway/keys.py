"""Typed application keys and the edge's configuration."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from aiohttp import web

from .invoke import Invoker

__all__ = ["CONFIG", "INVOKER", "EdgeConfig"]


@dataclass(frozen=True, slots=True)
class EdgeConfig:
    version: str = "0.1.0"
    """forge's version, reported by /health."""
    max_body_bytes: int = 16 * 1024 * 1024
    """Larger request bodies get 413."""
    default_timeout_s: float | None = None
    """Deadline for calls whose client sets none (`x-request-timeout` header, seconds)."""
    started_at: float = field(default_factory=time.time)
    sse_heartbeat_s: float = 15.0
    """While waiting for the first token, an SSE comment is sent this often so proxies keep the stream open."""
    auth_required: bool = False
    """The core enforces authentication (`FORGE_AUTH_ENABLED`): /ws then refuses a connection without valid
    credentials with 401 before the upgrade, as REST calls are refused by the core's auth policy."""
    ws_recheck_s: float = 60.0
    """With `auth_required`, how often an open /ws socket's credentials are checked again: a revoked key, a
    disabled user or an expired access token closes the socket (4401/4403), and the client reconnects."""
    cors_origins: tuple[str, ...] = ()
    """Browser origins allowed to call the edge cross-origin ("*": any). Empty, the default, allows none; a request
    carrying any other foreign `Origin` is refused with 403, so a web page cannot drive a local forge."""
    max_url_bytes: int = 8 * 1024
    """Longer request targets get 414."""
    max_header_bytes: int = 32 * 1024
    """Request headers larger than this in total, or one header line over `max_header_line_bytes`, or more than
    `max_headers` of them, get 431."""
    max_header_line_bytes: int = 16 * 1024
    max_headers: int = 128


INVOKER = web.AppKey("forge_invoker", Invoker)
CONFIG = web.AppKey("forge_edge_config", EdgeConfig)
