"""GET /ws: one WebSocket carrying many subscriptions, each backed by a shared server stream (hub.py).

A socket runs two owned tasks: the reader, which acts on client frames, and the writer (outbox.py), which alone
waits on the peer; with auth on, a third re-checks its credentials now and then. The socket lives while all do;
when one ends (peer closed, peer gone, server shutdown, credentials no longer valid) the others are cancelled and
every subscription leaves the hub, which cancels upstream calls nobody else follows.

With auth on, the upgrade request must carry valid credentials (credentials.py): without, the answer is the
core's 401 (or 403) before any upgrade.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import uuid
from collections.abc import AsyncIterator
from typing import Final

import grpc
from aiohttp import WSCloseCode, WSMsgType, web

from ..errors import error_reason, error_response
from ..invoke import InvokeError
from ..keys import CONFIG, INVOKER
from .credentials import SUBPROTOCOL, Caller, caller_of, check_caller
from .hub import Hub
from .outbox import Mailbox, Outbox
from .protocol import PONG, FrameError, Ping, Subscribe, Unsubscribe, error_frame, parse_frame
from .topics import StreamKey, check_topics, event_payloads, resolve

__all__ = ["HUB", "SESSIONS", "Session", "setup_ws"]

log = logging.getLogger("forge.ws")

HEARTBEAT_S: Final = 30.0
"""aiohttp pings this often and drops a peer that does not answer: a dead peer's subscriptions are released."""
MAX_FRAME_BYTES: Final = 64 * 1024
"""Client frames are small; a larger one is a protocol violation aiohttp answers by closing (1009)."""
SEND_BUFFER_BYTES: Final = 32 * 1024
"""Caps the kernel's send buffer and the transport's write buffer of a /ws connection. Linux autotuning grew the
send buffer of a peer that had stopped reading to 3.9 MB here (~17,000 stale progress frames) before its mailbox
dropped a single one; capped, a peer that catches up gets the newest snapshots after ~100 KB of backlog. Push
frames are small, so throughput does not suffer."""
WRITER_LIMIT: Final = 16 * 1024
"""Bytes aiohttp writes before it checks whether the transport wants the writer to wait."""
QUEUE_CAPACITY: Final = 8
"""Events a subscription holds for a slow socket before dropping the oldest."""
MAX_SUBSCRIPTIONS: Final = 64
"""Per socket, so one client cannot hold an unbounded number of upstream streams."""
CLOSE_TIMEOUT_S: Final = 2.0
"""How long shutdown waits for a peer to answer the close; one that never reads must not hold up the rest."""
#: Close codes (the private range) for a socket whose credentials stopped working: reconnect with new ones.
CLOSE_UNAUTHENTICATED: Final = 4401
CLOSE_FORBIDDEN: Final = 4403


class Session:
    """One socket's subscriptions: client id → (stream key, mailbox)."""

    def __init__(self, request: web.Request, ws: web.WebSocketResponse, hub: Hub, caller: Caller) -> None:
        self._request = request
        self._ws = ws
        self._hub = hub
        self._caller = caller
        self._invoker = request.app[INVOKER]
        self.outbox = Outbox(ws)
        self._subs: dict[str, tuple[StreamKey, Mailbox]] = {}

    async def read(self) -> None:
        """The socket's reader task: one client frame at a time, until the peer closes."""
        async for msg in self._ws:
            if msg.type is WSMsgType.TEXT:
                await self.handle(msg.data)
            elif msg.type is WSMsgType.BINARY:
                self.outbox.send(error_frame(None, "frames must be JSON text, not binary", "INVALID_ARGUMENT"))
            else:
                return  # ERROR: the connection failed; aiohttp has already closed it

    async def handle(self, text: str) -> None:
        try:
            frame = parse_frame(text)
            if isinstance(frame, Ping):
                self.outbox.send(PONG)
            elif isinstance(frame, Unsubscribe):
                await self._unsubscribe(frame.id)
            else:
                await self._subscribe(frame)
        except FrameError as err:
            self.outbox.send(error_frame(None, err.detail, err.code))

    async def _subscribe(self, frame: Subscribe) -> None:
        if frame.id in self._subs:
            raise FrameError(f"subscription id {frame.id!r} is already in use on this socket", "ALREADY_EXISTS")
        if len(self._subs) >= MAX_SUBSCRIPTIONS:
            raise FrameError(f"at most {MAX_SUBSCRIPTIONS} subscriptions per socket", "RESOURCE_EXHAUSTED")
        try:
            target = resolve(frame.topic, frame.params, self._invoker.methods, identity=self._caller.identity)
        except InvokeError as err:
            self.outbox.send(error_frame(frame.id, err.message, error_reason(err)))
            return
        mailbox = Mailbox(frame.id, self.outbox, QUEUE_CAPACITY, self._ended)
        self._subs[frame.id] = (target.key, mailbox)
        # The upgrade request's credentials go with the call, so auth applies as it does on REST. A stream is
        # shared only by sockets with the same credentials (the key holds them), so running it with its first
        # subscriber's metadata gives nobody another caller's rights. Each subscription is its own request.
        rid = self._request.headers.get("x-request-id") or uuid.uuid4().hex
        metadata = [("x-request-id", rid), *((k, v) for k, v in self._caller.metadata if k != "x-request-id")]
        invoker = self._invoker
        await self._hub.subscribe(
            target.key, mailbox, lambda: event_payloads(invoker, target.method, target.request, metadata)
        )

    async def _unsubscribe(self, sub_id: str) -> None:
        # Unknown ids are not an error: the stream may have completed while the unsubscribe was on its way.
        entry = self._subs.pop(sub_id, None)
        if entry is None:
            return
        key, mailbox = entry
        mailbox.close()
        await self._hub.unsubscribe(key, mailbox)

    def _ended(self, mailbox: Mailbox) -> None:
        entry = self._subs.get(mailbox.id)
        if entry is not None and entry[1] is mailbox:
            del self._subs[mailbox.id]

    async def close(self) -> None:
        """Leaves every stream (the socket is gone)."""
        subs, self._subs = list(self._subs.values()), {}
        for _, mailbox in subs:
            mailbox.close()
        await asyncio.gather(*(self._hub.unsubscribe(key, mailbox) for key, mailbox in subs))

    async def watch_credentials(self, every_s: float) -> None:
        """Re-checks the socket's credentials every `every_s`; closes the socket once the core refuses them (a
        revoked key, a disabled user, an expired access token). A core that cannot answer is not a refusal."""
        while True:
            await asyncio.sleep(every_s)
            err = await check_caller(self._invoker, self._caller)
            if err is None or err.code not in _REFUSALS:
                continue
            # A close reason holds at most 123 bytes; cut on a character boundary.
            reason = f"{error_reason(err)}: {err.message}".encode()[:120].decode(errors="ignore").encode()
            await self.shutdown(_REFUSALS[err.code], reason)
            return

    async def shutdown(self, code: int = WSCloseCode.GOING_AWAY, message: bytes = b"server shutting down") -> None:
        """Closes the socket from the server's side; the tasks then wind down through the handler."""
        try:
            async with asyncio.timeout(CLOSE_TIMEOUT_S):
                await self._ws.close(code=code, message=message)
        except TimeoutError:
            # aiohttp has dropped the transport on the timeout; the peer just misses the close handshake.
            log.info("/ws peer did not answer the close within %.1fs", CLOSE_TIMEOUT_S)


_REFUSALS = {
    grpc.StatusCode.UNAUTHENTICATED: CLOSE_UNAUTHENTICATED,
    grpc.StatusCode.PERMISSION_DENIED: CLOSE_FORBIDDEN,
}

HUB = web.AppKey("forge_ws_hub", Hub)
SESSIONS = web.AppKey("forge_ws_sessions", set[Session])


async def ws_handler(request: web.Request) -> web.StreamResponse:
    cfg = request.app[CONFIG]
    caller = caller_of(request)
    if cfg.auth_required and (refused := await check_caller(request.app[INVOKER], caller)) is not None:
        headers = {"WWW-Authenticate": "Bearer"} if refused.code is grpc.StatusCode.UNAUTHENTICATED else None
        return error_response(refused, headers)
    ws = web.WebSocketResponse(
        heartbeat=HEARTBEAT_S, max_msg_size=MAX_FRAME_BYTES, writer_limit=WRITER_LIMIT, protocols=(SUBPROTOCOL,)
    )
    await ws.prepare(request)
    _bound_send_buffers(request)
    session = Session(request, ws, request.app[HUB], caller)
    sessions = request.app[SESSIONS]
    sessions.add(session)
    tasks = {
        asyncio.create_task(session.read(), name="ws-reader"),
        asyncio.create_task(session.outbox.run(), name="ws-writer"),
    }
    if cfg.auth_required:
        tasks.add(asyncio.create_task(session.watch_credentials(cfg.ws_recheck_s), name="ws-credentials"))
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        sessions.discard(session)
        for task in tasks:
            task.cancel()
        await asyncio.wait(tasks)
        await session.close()
        if not ws.closed:
            await session.shutdown(WSCloseCode.OK, b"")
    for task in tasks:
        if not task.cancelled() and (exc := task.exception()) is not None:
            raise exc
    return ws


def _bound_send_buffers(request: web.Request) -> None:
    transport = request.transport
    if transport is None:
        return
    transport.set_write_buffer_limits(high=SEND_BUFFER_BYTES)
    sock = transport.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SEND_BUFFER_BYTES)


async def _hub_ctx(app: web.Application) -> AsyncIterator[None]:
    hub = app[HUB] = Hub()
    yield
    await hub.close()


async def _close_sockets(app: web.Application) -> None:
    # on_shutdown runs before cleanup_ctx unwinds: sockets close first, so the hub's close finds few streams left.
    sessions: set[Session] = app[SESSIONS]
    await asyncio.gather(*(session.shutdown() for session in list(sessions)))


def setup_ws(app: web.Application) -> None:
    check_topics()
    app[SESSIONS] = set()
    app.router.add_get("/ws", ws_handler, name="ws")
    app.cleanup_ctx.append(_hub_ctx)
    app.on_shutdown.append(_close_sockets)
