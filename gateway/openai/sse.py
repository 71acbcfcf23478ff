"""`POST /v1/chat/completions` with `stream: true`: ChatEvents from the core → SSE framed exactly as OpenAI frames
it (role chunk, content/tool-call deltas, finish chunk, optional usage chunk with `choices: []`, `[DONE]`).

The core's initial metadata (rate-limit headers) goes out with the response headers, before the first byte:
the first chunk's, or the first heartbeat's. A refusal before the first byte is a plain HTTP error with them.

This is the hot path. Every chunk of a stream shares id/created/model, so the JSON around the content is encoded
once per request into byte templates; a content chunk costs one `orjson.dumps` of the text and two byte
concatenations — no per-chunk dicts or models — and one `resp.write` per core event, flushed as it comes.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import cast

import orjson
from aiohttp import web
from forge.chat.v1 import chat_pb2

from ..call_metadata import INITIAL_WAIT_S, REQUEST_ID, forwarded_headers
from ..invoke import InvokeError, Metadata, initial_metadata
from ..keys import CONFIG, INVOKER
from .errors import OpenAIError, from_invoke, from_stream_error
from .translate import FINISH_REASONS, ChatCall, usage_json

__all__ = ["ChunkFrames", "refused", "stream_chat"]

STREAM = "/forge.chat.v1.ChatService/StreamChatCompletion"
DONE = b"data: [DONE]\n\n"
PING = b": ping\n\n"
_SSE_HEADERS = {
    "content-type": "text/event-stream",
    "cache-control": "no-cache",
    # nginx buffers proxied responses unless told not to, which would hold tokens back.
    "x-accel-buffering": "no",
}


class ChunkFrames:
    """Pre-encoded `chat.completion.chunk` bytes for one stream."""

    __slots__ = ("_close", "_finish_close", "_open", "_usage_open", "content_prefix", "content_suffix", "role")

    def __init__(self, completion_id: str, created: int, model: str, include_usage: bool) -> None:
        head = orjson.dumps(
            {
                "id": completion_id,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "system_fingerprint": None,
            }
        )[:-1]
        # With include_usage OpenAI adds "usage": null to every chunk before the usage chunk; else the key is absent.
        usage_null = b',"usage":null' if include_usage else b""
        self._open = b"data: " + head + b',"choices":[{"index":0,"delta":'
        self._close = b',"logprobs":null,"finish_reason":null}]' + usage_null + b"}\n\n"
        self._finish_close = b"}]" + usage_null + b"}\n\n"
        self._usage_open = (b"data: " + head + b',"choices":[],"usage":') if include_usage else b""
        self.content_prefix = self._open + b'{"content":'
        self.content_suffix = b"}" + self._close
        self.role = self._open + b'{"role":"assistant","content":""}' + self._close

    def tool_call(self, t: chat_pb2.ToolCallDelta) -> bytes:
        # The first fragment of a call carries its id and name; later ones only more arguments.
        function: dict[str, str] = {"name": t.name, "arguments": t.arguments} if t.name else {"arguments": t.arguments}
        call: dict[str, object] = {"index": t.index}
        if t.id:
            call["id"] = t.id
            call["type"] = "function"
        call["function"] = function
        return self._open + orjson.dumps({"tool_calls": [call]}) + self._close

    def finish(self, reason: str, usage: bytes | None) -> bytes:
        """The finish chunk, the usage chunk when asked for, and `[DONE]`: the end of a stream in one write."""
        out = self._open + b'{},"logprobs":null,"finish_reason":"' + reason.encode() + b'"' + self._finish_close
        if self._usage_open:
            out += self._usage_open + (usage or b"null") + b"}\n\n"
        return out + DONE


class SSEResponse(web.StreamResponse):
    # Hold the headers back until the first write so they leave in the same segment as the first chunk (one
    # send instead of two before the first token). A private aiohttp knob: without it headers just go earlier.
    _send_headers_immediately = False


class Heartbeat:
    """`: ping` comments while the first event is awaited, so proxies keep a slow prefill's stream open.

    A timer, not a task, until it first fires: most streams start long before it would, and a timer costs a
    fraction of a task. The pings run beside the handler rather than the handler waiting on a task of its own:
    the core call must be iterated by the handler's task (its deadline and request-id context live there)."""

    def __init__(
        self, request: web.Request, resp: web.StreamResponse, events: AsyncIterator[chat_pb2.ChatEvent], interval: float
    ) -> None:
        self._request, self._resp, self._interval = request, resp, interval
        self._events = events
        self._stopped = False
        self._task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()
        self._timer = asyncio.get_running_loop().call_later(interval, self._fire) if interval > 0 else None

    def _fire(self) -> None:
        self._timer = None
        if not self._stopped:
            self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        try:
            while True:
                if not self._resp.prepared:
                    # Outside the lock, so stop() can cancel the wait. The core sends a stream's headers with its
                    # first message, or about a second after admission without one (see INITIAL_WAIT_S).
                    await _with_initial(self._resp, self._events, min(self._interval, INITIAL_WAIT_S))
                async with self._lock:
                    if self._stopped:
                        return
                    if not self._resp.prepared:
                        await self._resp.prepare(self._request)
                    await self._resp.write(PING)
                await asyncio.sleep(self._interval)
        except ConnectionError:
            return  # the client left: aiohttp cancels the handler, which closes the core call

    async def stop(self) -> None:
        """When this returns, no ping is being written and none will be."""
        self._stopped = True
        if self._timer is not None:
            self._timer.cancel()
        if self._task is not None and not self._task.done():
            async with self._lock:  # let a ping in progress finish its write
                pass
            self._task.cancel()

    def cancel(self) -> None:
        self._stopped = True
        if self._timer is not None:
            self._timer.cancel()
        if self._task is not None:
            self._task.cancel()


async def _with_initial(
    resp: web.StreamResponse, events: AsyncIterator[chat_pb2.ChatEvent], wait: float | None
) -> None:
    try:
        initial = await asyncio.wait_for(initial_metadata(events), wait) if wait else await initial_metadata(events)
    except TimeoutError:
        return
    if not resp.prepared:
        resp.headers.update(forwarded_headers(initial))


def refused(err: InvokeError, field_prefix: str = "") -> OpenAIError:
    """OpenAI's error for a core failure, with the core's headers (a 429's `x-ratelimit-*`)."""
    error = from_invoke(err, field_prefix)
    error.headers.update(forwarded_headers(err.trailing))
    return error


async def _open(
    request: web.Request, resp: web.StreamResponse, heartbeat: Heartbeat, events: AsyncIterator[chat_pb2.ChatEvent]
) -> None:
    await heartbeat.stop()
    if not resp.prepared:
        await _with_initial(resp, events, None)  # known by now: the first event arrived
        await resp.prepare(request)


async def stream_chat(
    request: web.Request, call: ChatCall, metadata: Metadata, timeout: float | None
) -> web.StreamResponse:
    rid = request[REQUEST_ID]
    frames = ChunkFrames(f"chatcmpl-{rid}", int(time.time()), call.model, call.include_usage)
    resp = SSEResponse(headers={**_SSE_HEADERS, "x-request-id": rid})
    events = cast(
        AsyncIterator[chat_pb2.ChatEvent],
        request.app[INVOKER].stream(STREAM, chat_pb2.StreamChatCompletionRequest(chat=call.chat), metadata, timeout),
    )
    heartbeat = Heartbeat(request, resp, events, request.app[CONFIG].sse_heartbeat_s)
    try:
        try:
            first = await anext(events, None)
        except InvokeError as err:
            error = refused(err, "chat.")
            await heartbeat.stop()
            if not resp.prepared:
                return error.response(rid)  # nothing sent yet: a plain HTTP error the SDK can type
            await resp.write_eof(error.sse())
            return resp
        await _open(request, resp, heartbeat, events)
        if first is None:  # the core always ends with a finish event; an empty stream still ends as OpenAI's do
            await resp.write_eof(frames.role + frames.finish("stop", None))
        else:
            await _relay(resp, frames, first, events)
        return resp
    except ConnectionResetError:
        # The client left between two writes (before aiohttp cancelled this handler): nothing is left to tell
        # it, and the finally below still closes the core call.
        return resp
    finally:
        heartbeat.cancel()
        # Closing the iterator cancels the core call (and through it the upstream request) when the handler
        # leaves early: a client disconnect cancels this task, a failed write raises here.
        closer = cast(Callable[[], Awaitable[None]] | None, getattr(events, "aclose", None))
        if closer is not None:
            await closer()


class _Events:
    """Encodes the events that are not plain content (rare: at most a few per stream) and remembers the usage
    until the finish chunk needs it."""

    __slots__ = ("ended", "frames", "usage")

    def __init__(self, frames: ChunkFrames) -> None:
        self.frames = frames
        self.usage: bytes | None = None
        self.ended = False  # a finish or an error was written; whatever follows is not for the client

    def encode(self, event: chat_pb2.ChatEvent) -> bytes:
        kind = event.WhichOneof("event")
        if kind == "delta":
            text = event.delta.content
            return self.frames.content_prefix + orjson.dumps(text) + self.frames.content_suffix if text else b""
        if kind == "tool_call":
            return self.frames.tool_call(event.tool_call)
        if kind == "usage":
            self.usage = orjson.dumps(usage_json(event.usage))
        elif kind == "finish" and not self.ended:
            self.ended = True
            if self.usage is None and event.HasField("running_usage"):
                self.usage = orjson.dumps(usage_json(event.running_usage))
            return self.frames.finish(FINISH_REASONS.get(event.finish.reason, "stop"), self.usage)
        elif kind == "error" and not self.ended:
            self.ended = True
            e = event.error
            return from_stream_error(e.code, e.reason, e.message).sse()
        return b""


async def _relay(
    resp: web.StreamResponse,
    frames: ChunkFrames,
    first: chat_pb2.ChatEvent,
    events: AsyncIterator[chat_pb2.ChatEvent],
) -> None:
    state = _Events(frames)
    write, dumps, prefix, suffix, encode = (
        resp.write,
        orjson.dumps,
        frames.content_prefix,
        frames.content_suffix,
        state.encode,
    )
    try:
        await write(frames.role + encode(first))
        async for event in events:
            if event.HasField("delta"):  # the hot path, inline (HasField is half the cost of WhichOneof)
                text = event.delta.content
                if text:
                    await write(prefix + dumps(text) + suffix)
            elif data := encode(event):
                if state.ended:  # finish or error: the last bytes leave with the end of the chunked body
                    await resp.write_eof(data)
                else:
                    await write(data)
    except InvokeError as err:
        # The core ends a failed stream with an error status after the in-band error event; report it only
        # when no event did (e.g. a deadline, or the channel to a split core broke).
        if not state.ended:
            state.ended = True
            await resp.write_eof(from_invoke(err, "chat.").sse())
