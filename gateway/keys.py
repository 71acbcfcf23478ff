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


INVOKER = web.AppKey("forge_invoker", Invoker)
CONFIG = web.AppKey("forge_edge_config", EdgeConfig)
