"""The aiohttp edge: builds the application over an Invoker and runs it with handler cancellation on, so a
client that leaves cancels its handler and, through it, the core call and the upstream request. Security headers,
request limits and cross-origin control wrap every route (security.py)."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from aiohttp import web

from .call_metadata import REQUEST_ID, UPSTREAM_MS
from .invoke import Invoker
from .keys import CONFIG, INVOKER, EdgeConfig
from .openai import setup_openai
from .security import add_security_headers, cross_origin, request_limits
from .transcode import setup_docs, setup_transcoding
from .ws import setup_ws

__all__ = ["build_edge", "start_edge"]

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def edge_headers(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Echoes the request id, and on whole answers `x-forge-overhead-ms`: the time forge itself added (the
    call's time minus what the core spent waiting on the provider). Streams send their headers before the
    first byte, when that is not known yet."""
    started = time.perf_counter()
    response = await handler(request)
    if response.prepared:
        return response
    rid = request.get(REQUEST_ID)
    if rid:
        response.headers.setdefault("x-request-id", rid)
    elapsed = (time.perf_counter() - started) * 1000
    try:
        upstream = float(response.headers.get(UPSTREAM_MS, 0.0))
    except ValueError:
        upstream = 0.0
    response.headers["x-forge-overhead-ms"] = f"{max(0.0, elapsed - upstream):.2f}"
    return response


def build_edge(invoker: Invoker, config: EdgeConfig | None = None) -> web.Application:
    cfg = config or EdgeConfig()
    # Limits first: an oversized request is refused before anything else looks at it.
    app = web.Application(middlewares=[request_limits, cross_origin, edge_headers], client_max_size=cfg.max_body_bytes)
    app.on_response_prepare.append(add_security_headers)
    app[INVOKER] = invoker
    app[CONFIG] = cfg
    # OpenAI's paths first: where a seed path collides with OpenAI's, real clients speak OpenAI.
    setup_openai(app)
    setup_ws(app)
    setup_transcoding(app)
    setup_docs(app)
    return app


async def start_edge(
    app: web.Application, host: str, port: int, shutdown_timeout: float = 10.0
) -> tuple[web.AppRunner, int]:
    """Starts listening; returns the runner (for cleanup) and the bound port (port 0 picks a free one)."""
    cfg = app[CONFIG]
    # The parser's own limits sit above the edge's, so an oversized request line or header reaches
    # `request_limits` and gets its JSON 414/431 rather than the parser's plain-text 400.
    runner = web.AppRunner(
        app,
        handler_cancellation=True,
        access_log=None,
        shutdown_timeout=shutdown_timeout,
        max_line_size=2 * max(cfg.max_url_bytes, cfg.max_header_line_bytes),
        max_field_size=2 * cfg.max_header_line_bytes,
        max_headers=2 * cfg.max_headers,
    )
    await runner.setup()
    site = web.TCPSite(runner, host, port, reuse_address=True)
    await site.start()
    server = site._server
    sockets = getattr(server, "sockets", None) or []
    bound = sockets[0].getsockname()[1] if sockets else port
    return runner, int(bound)
