"""The fake upstream app and its process entry point.

    python -m tests.fakes.server --host 127.0.0.1 --port 0

prints exactly one line ``{"port": N}`` once listening, then serves until
SIGTERM/SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
from collections.abc import Awaitable, Callable

from aiohttp import web

from . import anthropic_wire, control, ollama_admin, ollama_wire, openai_errors, openai_wire
from .state import STATE, FakeState, attach_record, state_of

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# In-flight streams get this long to finish on SIGTERM before cancellation;
# aiohttp's default of 60 s would stall every test teardown.
_SHUTDOWN_TIMEOUT_S = 0.5


@web.middleware
async def record_requests(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Give every wire request a record and note how and when it ended.

    CancelledError is what aiohttp's handler_cancellation delivers when the
    client disconnects while the handler waits (TTFT, gaps, unary delay), so
    catching it here is what makes ``client_closed_early`` and ``ended``
    accurate to the millisecond.
    """
    if request.path.startswith("/_control/"):
        return await handler(request)
    recorder = state_of(request).recorder
    rec = recorder.open(request.method, request.path, request.headers)
    peer = request.transport.get_extra_info("peername") if request.transport is not None else None
    rec.peer_port = int(peer[1]) if peer else 0
    attach_record(request, rec)
    status: int | None = None
    try:
        try:
            resp = await handler(request)
        except (web.HTTPNotFound, web.HTTPMethodNotAllowed) as exc:
            resp = _unrouted(request, exc)
        status = resp.status
        return resp
    except web.HTTPException as exc:
        status = exc.status
        raise
    except asyncio.CancelledError:
        recorder.close(rec, status=None, client_closed_early=True)
        raise
    finally:
        recorder.close(rec, status=status, client_closed_early=False)


def _unrouted(request: web.Request, exc: web.HTTPException) -> web.StreamResponse:
    """Answer unknown paths the way each provider does, not with aiohttp's text.

    A forge adapter calling a wrong path should see the error body the real
    provider would send, so its error mapping is exercised honestly.
    """
    if request.path.startswith("/v1/"):
        message = f"Invalid URL ({request.method} {request.path})"
        return openai_errors.error_response(exc.status, message)
    if request.path.startswith("/api/"):
        # Ollama's Go router answers any unrouted method/path like this.
        return web.Response(status=404, text="404 page not found")
    raise exc


def build_app() -> web.Application:
    app = web.Application(middlewares=[record_requests], client_max_size=64 * 1024**2)
    app[STATE] = FakeState()
    openai_wire.add_routes(app)
    anthropic_wire.add_routes(app)
    ollama_wire.add_routes(app)
    ollama_admin.add_routes(app)
    control.add_routes(app)
    return app


async def _watch_stdin(stop: asyncio.Event) -> None:
    """Set ``stop`` when stdin reaches EOF, i.e. the parent process died.

    Only used with --exit-on-stdin-eof (FakeUpstream passes a pipe), so a
    crashed test run cannot leave orphan servers holding ports.
    """
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while await reader.read(4096):
        pass
    stop.set()


async def serve(host: str, port: int, exit_on_stdin_eof: bool = False) -> None:
    # handler_cancellation=True: without it aiohttp (>=3.9) lets a handler
    # sleep on after the client left, and disconnects would only be noticed
    # at the next write.
    runner = web.AppRunner(
        build_app(),
        handler_cancellation=True,
        access_log=None,
        shutdown_timeout=_SHUTDOWN_TIMEOUT_S,
    )
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    bound = runner.addresses[0][1]
    sys.stdout.write(json.dumps({"port": bound}) + "\n")
    sys.stdout.flush()

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    watcher = asyncio.create_task(_watch_stdin(stop)) if exit_on_stdin_eof else None
    try:
        await stop.wait()
    finally:
        if watcher is not None:
            watcher.cancel()
        await runner.cleanup()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Fake OpenAI/Ollama upstream for tests")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--exit-on-stdin-eof", action="store_true")
    args = parser.parse_args(argv)
    asyncio.run(serve(args.host, args.port, args.exit_on_stdin_eof))


if __name__ == "__main__":
    main()
