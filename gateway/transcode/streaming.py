"""A server-streaming RPC over HTTP: NDJSON (one JSON object per line) by default, SSE (`data: {json}`) when the
client accepts `text/event-stream`. Each message is written as it arrives; aiohttp hands it to the socket at
once (no buffering beyond the kernel's).

Headers: the core's initial metadata (rate-limit state) goes out with the response headers, before the first
byte — the first message's, or the first heartbeat's.

Errors: before the first byte, a normal HTTP error response; after it, one final in-band line or `event: error`
with the same `{"detail", "code", "error"}` body. A client that leaves cancels the handler (aiohttp's
`handler_cancellation`), which closes the invoker's stream and through it the core call and the upstream.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc
import orjson
from aiohttp import web
from google.protobuf.message import Message

from ..call_metadata import INITIAL_WAIT_S, forwarded_headers
from ..errors import error_json
from ..invoke import InvokeError, initial_metadata
from .encode import Encoder

__all__ = ["internal_error", "stream_messages"]

log = logging.getLogger("forge.edge")

_PING = b": ping\n\n"


def internal_error(exc: BaseException, request_id: str) -> InvokeError:
    log.error("unexpected error in the REST edge (request %s)", request_id, exc_info=exc)
    return InvokeError(grpc.StatusCode.INTERNAL, f"internal error (request id {request_id})")


class _Heartbeat:
    """SSE comment pings while the stream waits for its first message, so proxies keep it open.

    The source iterator stays in the handler task: the core's stream generator sets the request id context
    variable and enters `asyncio.timeout()` on its first step, both bound to the task that runs it. So the
    waiting is not moved to another task; instead a timer handle (no task) is armed, and only when the first
    message is late does a small task start writing pings. `stop()` never cancels that task mid-write (a half
    written response could not be continued): it waits for the write to finish."""

    __slots__ = ("_interval", "_request", "_response", "_source", "_stopping", "_task", "_timer", "_writing")

    def __init__(
        self, request: web.Request, response: web.StreamResponse, source: AsyncIterator[Message], interval: float
    ) -> None:
        self._request, self._response, self._interval = request, response, interval
        self._source = source
        self._task: asyncio.Task[None] | None = None
        self._writing = self._stopping = False
        self._timer = asyncio.get_running_loop().call_later(interval, self._start)

    def _start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        while True:  # stop() cancels this task before its first step, or lets the write finish
            if not self._response.prepared:
                # The core sends a stream's headers with its first message, or about a second after admission
                # without one (see INITIAL_WAIT_S).
                await _with_initial(self._response, self._source, min(self._interval, INITIAL_WAIT_S))
            self._writing = True
            try:
                if not self._response.prepared:
                    await self._response.prepare(self._request)
                await self._response.write(_PING)
            finally:
                self._writing = False
            if self._stopping:
                return
            await asyncio.sleep(self._interval)

    async def stop(self) -> None:
        self._timer.cancel()
        task = self._task
        if task is None:
            return
        self._stopping = True
        if not self._writing:
            task.cancel()
        await asyncio.wait({task})
        if not task.cancelled() and task.exception() is not None:
            # A failed ping means the client is gone; the handler is (or is about to be) cancelled for it.
            log.debug("SSE heartbeat failed", exc_info=task.exception())


class _Framing:
    __slots__ = ("content_type", "error_prefix", "prefix", "suffix")

    def __init__(self, sse: bool) -> None:
        self.content_type = "text/event-stream" if sse else "application/x-ndjson"
        self.prefix = b"data: " if sse else b""
        self.suffix = b"\n\n" if sse else b"\n"
        self.error_prefix = b"event: error\ndata: " if sse else b""

    def error(self, err: InvokeError) -> bytes:
        return self.error_prefix + orjson.dumps({"error": error_json(err)}) + self.suffix


_NDJSON, _SSE = _Framing(sse=False), _Framing(sse=True)


async def _with_initial(response: web.StreamResponse, source: AsyncIterator[Message], wait: float | None) -> None:
    """Adds the core's initial metadata to the headers of a response not yet prepared."""
    try:
        initial = await asyncio.wait_for(initial_metadata(source), wait) if wait else await initial_metadata(source)
    except TimeoutError:
        return
    response.headers.update(forwarded_headers(initial))


async def _aclose(source: AsyncIterator[Message]) -> None:
    closer: Callable[[], Any] | None = getattr(source, "aclose", None)
    if closer is not None:
        await closer()


async def stream_messages(
    request: web.Request,
    source: AsyncIterator[Message],
    encode: Encoder,
    *,
    sse: bool,
    request_id: str,
    heartbeat_s: float,
    error_response: Callable[[InvokeError, dict[str, str]], web.StreamResponse],
) -> web.StreamResponse:
    framing = _SSE if sse else _NDJSON
    response = web.StreamResponse(
        headers={"cache-control": "no-cache", "x-accel-buffering": "no", "x-request-id": request_id}
    )
    response.content_type = framing.content_type
    prefix, suffix = framing.prefix, framing.suffix
    try:
        first: Message | None = None
        failure: Exception | None = None
        heartbeat = _Heartbeat(request, response, source, heartbeat_s) if sse and heartbeat_s > 0 else None
        try:
            first = await anext(source)
        except StopAsyncIteration:
            pass
        except Exception as exc:
            failure = exc
        finally:
            if heartbeat is not None:
                await heartbeat.stop()
        if failure is not None:
            err = failure if isinstance(failure, InvokeError) else internal_error(failure, request_id)
            if not response.prepared:
                return error_response(err, {"x-request-id": request_id})
            await response.write(framing.error(err))  # heartbeats already went out
        else:
            if not response.prepared:
                await _with_initial(response, source, None)  # known by now: the first message arrived
                await response.prepare(request)
            if first is not None:
                try:
                    await response.write(prefix + orjson.dumps(encode(first)) + suffix)
                    async for message in source:
                        await response.write(prefix + orjson.dumps(encode(message)) + suffix)
                except ConnectionError:
                    raise  # the client is gone: nothing to tell it
                except Exception as exc:
                    err = exc if isinstance(exc, InvokeError) else internal_error(exc, request_id)
                    await response.write(framing.error(err))
    finally:
        # Closing the source is what cancels the core call and the upstream when the client left early (the
        # handler's CancelledError passes through untouched); after a normal end it is a no-op.
        await _aclose(source)
    await response.write_eof()
    return response
