"""/ws fan-out: sockets on one topic+params share one upstream stream; a socket that never reads slows nobody;
the last subscriber to leave (unsubscribe, close, shutdown) cancels the upstream."""

from __future__ import annotations

import asyncio
import base64
import os
import socket
import time
from collections.abc import Sequence
from typing import Any, Self

import aiohttp
import orjson
import pytest
from google.protobuf.message import Message

from forge_rpc.server.app import ForgeApp
from forge_rpc.testing import running_forge
from gateway.keys import INVOKER
from gateway.ws import HUB
from gateway.ws.routes import MAX_SUBSCRIPTIONS
from tests.conftest import forge_config
from tests.fakes import FakeUpstream
from tests.gateway.test_ws import Frame, connect, frames_for, next_frame, subscribe, until_pong

pytestmark = pytest.mark.asyncio


class RawWebSocket:
    """A bare RFC 6455 client on a socket with a tiny receive buffer that reads only when asked: the peer that
    stops reading, with no client library buffering on its behalf."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader, self._writer = reader, writer

    @classmethod
    async def open(cls, port: int, rcvbuf: int = 4096) -> Self:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)  # before connect, so the window stays small
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
        # limit: the stream stops reading the socket once ~2 KiB wait unread.
        reader, writer = await asyncio.open_connection(sock=sock, limit=1024)
        key = base64.b64encode(os.urandom(16)).decode()
        writer.write(
            f"GET /ws HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
        )
        await writer.drain()
        head = await reader.readuntil(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 101"), head
        return cls(reader, writer)

    async def send(self, frame: Frame) -> None:
        payload, mask = orjson.dumps(frame), os.urandom(4)
        assert len(payload) < 126
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self._writer.write(bytes([0x81, 0x80 | len(payload)]) + mask + masked)
        await self._writer.drain()

    async def receive(self) -> Frame:
        """The next text frame (server frames are unmasked and, without extensions, unfragmented)."""
        while True:
            b0, b1 = await self._reader.readexactly(2)
            size = b1 & 0x7F
            if size >= 126:
                size = int.from_bytes(await self._reader.readexactly(2 if size == 126 else 8), "big")
            payload = await self._reader.readexactly(size)
            if b0 & 0x0F == 0x1:
                frame = orjson.loads(payload)
                assert isinstance(frame, dict)
                return frame

    async def close(self) -> None:
        self._writer.close()
        await self._writer.wait_closed()


def count_streams(monkeypatch: pytest.MonkeyPatch, app: ForgeApp) -> list[str]:
    """Records every upstream call the edge's invoker makes (either invoker)."""
    assert app.edge is not None
    invoker = app.edge.app[INVOKER]
    calls: list[str] = []
    original = invoker.stream

    def stream(method: str, request: Message, metadata: Sequence[tuple[str, str]], timeout: float | None) -> Any:
        calls.append(method)
        return original(method, request, metadata, timeout)

    monkeypatch.setattr(invoker, "stream", stream)
    return calls


def hub_streams(app: ForgeApp) -> int:
    assert app.edge is not None
    return len(app.edge.app[HUB])


async def test_two_sockets_share_one_upstream_stream(
    edge: ForgeApp, fake: FakeUpstream, monkeypatch: pytest.MonkeyPatch
) -> None:
    await fake.set_defaults(pull_steps=6, pull_gap_ms=30)
    calls = count_streams(monkeypatch, edge)
    async with aiohttp.ClientSession() as session, await connect(edge, session) as a, await connect(edge, session) as b:
        await subscribe(a, "mine", "pull", model="wsshared:1b")
        assert (await next_frame(a))["type"] == "event"  # running before the second socket joins
        # The same params in another spelling (json_name `name`) are the same stream.
        await subscribe(b, "theirs", "pull", name="wsshared:1b")
        got_a, got_b = await asyncio.gather(frames_for(a, "mine"), frames_for(b, "theirs"))
    assert got_a[-1]["type"] == got_b[-1]["type"] == "complete"
    assert got_a[-2]["data"] == got_b[-2]["data"] and got_b[-2]["data"]["status"] == "success"
    assert calls == ["/forge.models.v1.ModelsService/PullModel"]
    assert (await fake.pulls()) == {"wsshared:1b": 1}
    assert hub_streams(edge) == 0


async def test_a_late_joiner_gets_the_latest_event_at_once(local_edge: ForgeApp, fake: FakeUpstream) -> None:
    await fake.set_defaults(pull_steps=10, pull_gap_ms=300)
    async with (
        aiohttp.ClientSession() as session,
        await connect(local_edge, session) as first,
        await connect(local_edge, session) as late,
    ):
        await subscribe(first, "f", "pull", model="wslate:1b")
        seen = [await next_frame(first) for _ in range(3)]
        asked = time.monotonic()
        await subscribe(late, "l", "pull", model="wslate:1b")
        frame = await next_frame(late)
        assert time.monotonic() - asked < 0.15  # well inside the 300 ms gap to the next event
        assert frame == {"type": "event", "id": "l", "data": seen[-1]["data"]}
        await first.close()
        await late.close()


async def test_a_socket_that_never_reads_does_not_slow_the_others(edge: ForgeApp, fake: FakeUpstream) -> None:
    # 2,000 progress frames (~460 KB) paced 1 ms apart: several times what the stalled peer's socket buffers and
    # the server's (capped) send buffers hold, and slow enough for a reading socket to keep up.
    await fake.set_defaults(pull_steps=1000, pull_gap_ms=1)
    stalled = await RawWebSocket.open(edge.http_port)
    try:
        await stalled.send({"type": "subscribe", "id": "slow", "topic": "pull", "params": {"model": "wsslow:1b"}})
        assert (await stalled.receive())["id"] == "slow"  # subscribed and flowing; from here on it never reads
        async with aiohttp.ClientSession() as session, await connect(edge, session) as ws:
            started = time.monotonic()
            await subscribe(ws, "fast", "pull", model="wsslow:1b")
            fast = await frames_for(ws, "fast", timeout=30)
            took = time.monotonic() - started
        assert fast[-1]["type"] == "complete" and fast[-2]["data"]["status"] == "success"
        slow: list[Frame] = []
        while not slow or slow[-1]["type"] != "complete":
            slow.append(await asyncio.wait_for(stalled.receive(), 5))
    finally:
        await stalled.close()
    (pull,) = [r for r in await fake.requests() if r["path"] == "/api/pull"]
    # The reading socket finished with the upstream pull, not with the stalled socket.
    assert took < pull["ended"] - pull["started"] + 0.5
    # The stalled socket's mailbox kept only the newest snapshots: far fewer events, the last being success.
    assert len(slow) < len(fast) / 2
    assert slow[-2]["data"]["status"] == "success"
    assert (await fake.pulls()) == {"wsslow:1b": 1}


async def test_closing_the_last_socket_cancels_the_upstream(edge: ForgeApp, fake: FakeUpstream) -> None:
    await fake.set_defaults(pull_steps=40, pull_gap_ms=50)  # ~4 s of progress
    async with aiohttp.ClientSession() as session:
        stays = await connect(edge, session)
        leaves = await connect(edge, session)
        await subscribe(stays, "s", "pull", model="wsclose:1b@tag=ws-close")
        await subscribe(leaves, "l", "pull", model="wsclose:1b@tag=ws-close")
        assert (await next_frame(leaves))["type"] == "event"
        await leaves.close()  # another subscriber remains: the stream goes on
        await asyncio.sleep(0.2)
        assert [r["ended"] for r in await fake.requests("ws-close")] == [None]
        assert (await next_frame(stays))["type"] == "event"
        await stays.close()
        closed = time.monotonic()
        record = await fake.wait_closed("ws-close")
    assert record["client_closed_early"] and record["ended"] - closed < 1.0
    assert hub_streams(edge) == 0  # the hub forgets a stream before it cancels it


async def test_shutdown_closes_sockets_and_cancels_upstreams(fake: FakeUpstream) -> None:
    await fake.reset()
    await fake.set_defaults(pull_steps=40, pull_gap_ms=50)
    async with aiohttp.ClientSession() as session:
        async with running_forge(forge_config(fake)) as app:
            ws = await connect(app, session)
            await subscribe(ws, "x", "pull", model="wsdown:1b@tag=ws-down")
            assert (await next_frame(ws))["type"] == "event"
            stalled = await RawWebSocket.open(app.http_port)  # never answers the close handshake
            await stalled.send({"type": "ping"})
            stopping = time.monotonic()
        assert time.monotonic() - stopping < 4.0
        while (msg := await ws.receive(5)).type is aiohttp.WSMsgType.TEXT:
            pass  # progress sent before the close
        assert msg.type is aiohttp.WSMsgType.CLOSE and msg.data == aiohttp.WSCloseCode.GOING_AWAY
        await stalled.close()
    record = await fake.wait_closed("ws-down")
    assert record["client_closed_early"]


async def test_unsubscribe_keeps_a_stream_others_follow(local_edge: ForgeApp, fake: FakeUpstream) -> None:
    await fake.set_defaults(pull_steps=5, pull_gap_ms=40)
    async with aiohttp.ClientSession() as session, await connect(local_edge, session) as ws:
        await subscribe(ws, "one", "pull", model="wsboth:1b")
        await subscribe(ws, "two", "pull", model="wsboth:1b")
        await ws.send_str(orjson.dumps({"type": "unsubscribe", "id": "one"}).decode())
        await until_pong(ws)
        after: list[Frame] = []
        while not after or after[-1]["type"] != "complete":
            after.append(await next_frame(ws))
    assert {f["id"] for f in after} == {"two"}
    assert (await fake.pulls()) == {"wsboth:1b": 1}


async def test_a_peer_that_vanishes_releases_its_upstream(local_edge: ForgeApp, fake: FakeUpstream) -> None:
    await fake.set_defaults(pull_steps=40, pull_gap_ms=50)
    raw = await RawWebSocket.open(local_edge.http_port)
    await raw.send({"type": "subscribe", "id": "v", "topic": "pull", "params": {"model": "wsgone:1b@tag=ws-gone"}})
    assert (await raw.receive())["id"] == "v"
    await raw.close()  # TCP closed without a WebSocket close frame
    gone = time.monotonic()
    record = await fake.wait_closed("ws-gone")
    assert record["client_closed_early"] and record["ended"] - gone < 1.0


async def test_subscriptions_per_socket_are_bounded(local_edge: ForgeApp, fake: FakeUpstream) -> None:
    await fake.set_defaults(pull_steps=40, pull_gap_ms=50)
    async with aiohttp.ClientSession() as session, await connect(local_edge, session) as ws:
        for n in range(MAX_SUBSCRIPTIONS):
            await subscribe(ws, f"s{n}", "pull", model="wsmany:1b")
        await subscribe(ws, "one-too-many", "pull", model="wsmany:1b")
        refused = [f for f in await until_pong(ws) if f["type"] == "error"]
        assert [(f["id"], f["error"]["code"]) for f in refused] == [(None, "RESOURCE_EXHAUSTED")]
        assert hub_streams(local_edge) == 1  # 64 subscriptions, one upstream stream
