"""The /ws hub and outbox without a server: sharing, latest-wins mailboxes, cancellation, and the writer's order."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from typing import cast

import grpc
import orjson
import pytest
from aiohttp import WSMsgType, web
from google.rpc import error_details_pb2, status_pb2

from gateway.invoke import InvokeError
from gateway.ws.hub import COMPLETE, Event, Failure, Hub, Item
from gateway.ws.outbox import Mailbox, Outbox
from gateway.ws.protocol import PONG

pytestmark = pytest.mark.asyncio

KEY = ("pull", b"\n\x04x:1b")


class Recorder:
    """A Sink that keeps everything."""

    def __init__(self) -> None:
        self.items: list[Item] = []
        self.got = asyncio.Event()

    def offer(self, item: Item) -> None:
        self.items.append(item)
        self.got.set()

    async def until(self, count: int) -> list[Item]:
        async with asyncio.timeout(2):
            while len(self.items) < count:
                self.got.clear()
                await self.got.wait()
        return self.items


class Upstream:
    """A scripted stream: yields what the test feeds it and records how it ended."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[bytes | BaseException | None] = asyncio.Queue()
        self.opened = 0
        self.closed = asyncio.Event()

    async def stream(self) -> AsyncGenerator[bytes, None]:
        self.opened += 1
        try:
            while (item := await self.queue.get()) is not None:
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            self.closed.set()


async def test_subscribers_share_one_stream_and_late_joiners_get_the_latest() -> None:
    hub, up, first, late = Hub(), Upstream(), Recorder(), Recorder()
    await hub.subscribe(KEY, first, up.stream)
    up.queue.put_nowait(b"1")
    up.queue.put_nowait(b"2")
    await first.until(2)
    await hub.subscribe(KEY, late, up.stream)
    assert late.items == [Event(b"2")]  # at once, before the stream moves on
    up.queue.put_nowait(b"3")
    up.queue.put_nowait(None)
    assert await first.until(4) == [Event(b"1"), Event(b"2"), Event(b"3"), COMPLETE]
    assert await late.until(3) == [Event(b"2"), Event(b"3"), COMPLETE]
    assert up.opened == 1 and len(hub) == 0


async def test_the_last_subscriber_out_cancels_the_stream() -> None:
    hub, up, a, b = Hub(), Upstream(), Recorder(), Recorder()
    await hub.subscribe(KEY, a, up.stream)
    await hub.subscribe(KEY, b, up.stream)
    up.queue.put_nowait(b"1")
    await a.until(1)
    await hub.unsubscribe(KEY, a)
    assert not up.closed.is_set() and len(hub) == 1
    await hub.unsubscribe(KEY, b)
    assert up.closed.is_set() and len(hub) == 0  # unsubscribe returns once the upstream call is closed
    await hub.unsubscribe(KEY, b)  # already gone: harmless


async def test_errors_end_the_stream_with_their_reason() -> None:
    hub, up, sink = Hub(), Upstream(), Recorder()
    await hub.subscribe(KEY, sink, up.stream)
    status = status_pb2.Status(code=grpc.StatusCode.NOT_FOUND.value[0], message="no such model")
    status.details.add().Pack(error_details_pb2.ErrorInfo(reason="MODEL_NOT_FOUND", domain="forge"))
    up.queue.put_nowait(InvokeError(grpc.StatusCode.NOT_FOUND, "no such model", status))
    assert await sink.until(1) == [Failure("no such model", "MODEL_NOT_FOUND")]

    other = Upstream()
    await hub.subscribe(KEY, sink, other.stream)  # a fresh stream under the same key
    other.queue.put_nowait(RuntimeError("bug"))
    (_, failure) = await sink.until(2)
    assert failure == Failure("internal error in the pull stream", "INTERNAL")


async def test_a_winding_down_stream_cannot_publish_into_its_successor() -> None:
    hub, sink = Hub(), Recorder()
    release = asyncio.Event()

    async def stubborn() -> AsyncGenerator[bytes, None]:
        try:
            yield b"old"
            await asyncio.Event().wait()
        except asyncio.CancelledError:  # misbehaves on purpose: one more item after being cancelled
            await release.wait()
            yield b"stale"

    await hub.subscribe(KEY, sink, stubborn)
    await sink.until(1)
    leaving = asyncio.create_task(hub.unsubscribe(KEY, sink))
    await asyncio.sleep(0)
    up, fresh = Upstream(), Recorder()
    await hub.subscribe(KEY, fresh, up.stream)
    release.set()
    await leaving
    up.queue.put_nowait(b"new")
    assert await fresh.until(1) == [Event(b"new")]
    up.queue.put_nowait(None)
    assert await fresh.until(2) == [Event(b"new"), COMPLETE]


async def test_close_cancels_every_stream() -> None:
    hub, ups = Hub(), [Upstream(), Upstream()]
    for n, up in enumerate(ups):
        await hub.subscribe(("metrics", bytes([n])), Recorder(), up.stream)
    await asyncio.sleep(0)
    await hub.close()
    assert all(up.closed.is_set() for up in ups) and len(hub) == 0


# ------------------------------------------------------------------------------------------- outbox


class Socket:
    """Stands in for the WebSocketResponse: records frames; `gate` cleared makes it a peer that stopped reading."""

    def __init__(self) -> None:
        self.sent: list[dict[str, object]] = []
        self.gate = asyncio.Event()
        self.gate.set()

    async def send_frame(self, message: bytes, opcode: WSMsgType) -> None:
        assert opcode is WSMsgType.TEXT
        await self.gate.wait()
        self.sent.append(orjson.loads(message))


def outbox_on(sock: Socket) -> Outbox:
    return Outbox(cast(web.WebSocketResponse, sock))


async def test_a_full_mailbox_keeps_the_newest_events_and_always_the_end() -> None:
    sock = Socket()
    outbox = outbox_on(sock)
    ended: list[str] = []
    box = Mailbox("p", outbox, 4, lambda m: ended.append(m.id))
    for n in range(20):
        box.offer(Event(orjson.dumps({"n": n})))
    box.offer(COMPLETE)
    box.offer(Event(b"{}"))  # after the end: ignored
    assert ended == ["p"] and box.dropped == 16
    writer = asyncio.create_task(outbox.run())
    await asyncio.sleep(0.01)
    writer.cancel()
    await asyncio.wait({writer})
    assert sock.sent == [
        *({"type": "event", "id": "p", "data": {"n": n}} for n in range(16, 20)),
        {"type": "complete", "id": "p"},
    ]


async def test_the_writer_sends_control_first_and_takes_turns_between_subscriptions() -> None:
    sock = Socket()
    sock.gate.clear()
    outbox = outbox_on(sock)
    a = Mailbox("a", outbox, 8, lambda _: None)
    b = Mailbox("b", outbox, 8, lambda _: None)
    gone = Mailbox("gone", outbox, 8, lambda _: None)
    for n in range(3):
        a.offer(Event(str(n).encode()))
    b.offer(Event(b"0"))
    b.offer(Failure("boom", "INTERNAL"))
    gone.offer(Event(b"0"))
    gone.close()  # unsubscribed: its buffered event never goes out
    outbox.send(PONG)
    writer = asyncio.create_task(outbox.run())
    await asyncio.sleep(0)
    sock.gate.set()
    await asyncio.sleep(0.01)
    writer.cancel()
    await asyncio.wait({writer})
    assert [(f["type"], f.get("id"), f.get("data")) for f in sock.sent] == [
        ("pong", None, None),
        ("event", "a", 0),
        ("event", "b", 0),
        ("event", "a", 1),
        ("error", "b", None),
        ("event", "a", 2),
    ]
    assert sock.sent[4]["error"] == {"detail": "boom", "code": "INTERNAL"}
