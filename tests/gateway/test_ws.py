"""/ws over real WebSockets against a real forge (both invokers): pull progress, ping, unsubscribe, error frames.

The helpers here (`subscribe`, `frames_for`…) are shared with test_ws_fanout.py."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp
import grpc
import orjson
import pytest
from forge.models.v1 import models_pb2, models_pb2_grpc

from forge_rpc.server.app import ForgeApp
from tests.fakes import FakeUpstream

pytestmark = pytest.mark.asyncio

Frame = dict[str, Any]


async def connect(app: ForgeApp, session: aiohttp.ClientSession) -> aiohttp.ClientWebSocketResponse:
    return await session.ws_connect(f"http://127.0.0.1:{app.http_port}/ws")


async def send(ws: aiohttp.ClientWebSocketResponse, frame: Frame) -> None:
    await ws.send_str(orjson.dumps(frame).decode())


async def subscribe(ws: aiohttp.ClientWebSocketResponse, sub_id: str, topic: str, **params: Any) -> None:
    await send(ws, {"type": "subscribe", "id": sub_id, "topic": topic, "params": params})


async def next_frame(ws: aiohttp.ClientWebSocketResponse, timeout: float = 5.0) -> Frame:
    msg = await ws.receive(timeout)
    assert msg.type is aiohttp.WSMsgType.TEXT, msg
    frame = orjson.loads(msg.data)
    assert isinstance(frame, dict)
    return frame


async def frames_for(ws: aiohttp.ClientWebSocketResponse, sub_id: str, timeout: float = 10.0) -> list[Frame]:
    """Frames of one subscription up to and including its `complete` or `error`."""
    out: list[Frame] = []
    async with asyncio.timeout(timeout):
        while True:
            frame = await next_frame(ws, timeout)
            if frame.get("id") != sub_id:
                continue
            out.append(frame)
            if frame["type"] in ("complete", "error"):
                return out


async def until_pong(ws: aiohttp.ClientWebSocketResponse) -> list[Frame]:
    """Pings and returns the frames that arrived before the pong: everything the server had sent until then."""
    await send(ws, {"type": "ping"})
    before: list[Frame] = []
    while (frame := await next_frame(ws))["type"] != "pong":
        before.append(frame)
    return before


async def test_pull_streams_progress_then_completes(edge: ForgeApp, http: aiohttp.ClientSession) -> None:
    async with await connect(edge, http) as ws:
        await subscribe(ws, "p1", "pull", model="wsprogress:1b")
        frames = await frames_for(ws, "p1")
    assert frames[-1] == {"type": "complete", "id": "p1"}
    events = [f["data"] for f in frames[:-1]]
    assert all(f["type"] == "event" for f in frames[:-1])
    assert events[0]["status"] == "pulling manifest" and events[0]["model"] == "wsprogress:1b"
    layers = [e for e in events if "total" in e]
    assert layers and all(0 <= e["percent"] <= 100 for e in layers)
    assert any(0 < int(e["completed"]) < int(e["total"]) for e in layers)  # int64 is a JSON string in proto3
    assert events[-1]["done"] and events[-1]["status"] == "success" and events[-1]["percent"] == 100
    async with grpc.aio.insecure_channel(f"127.0.0.1:{edge.grpc_port}") as channel:
        stub: Any = models_pb2_grpc.ModelsServiceStub(channel)
        listed = await stub.ListModels(models_pb2.ListModelsRequest(provider="ollama"))
    assert "wsprogress:1b" in {m.name for m in listed.models}


async def test_name_spelling_and_numbered_params_reach_the_request(local_edge: ForgeApp, fake: FakeUpstream) -> None:
    # `name` is PullModelRequest.model's json_name (seed 000): params are the request message in proto JSON.
    async with aiohttp.ClientSession() as session, await connect(local_edge, session) as ws:
        await subscribe(ws, "p", "pull", name="wsname:1b")
        frames = await frames_for(ws, "p")
    assert frames[-1]["type"] == "complete"
    assert (await fake.pulls()).get("wsname:1b") == 1


async def test_ping_pong_including_the_seed_bare_ping(local_edge: ForgeApp) -> None:
    async with aiohttp.ClientSession() as session, await connect(local_edge, session) as ws:
        await send(ws, {"type": "ping"})
        assert await next_frame(ws) == {"type": "pong"}
        await ws.send_str("ping")  # seed 003 (Oxide) documents `ws.send('ping')`
        assert await next_frame(ws) == {"type": "pong"}


async def test_unsubscribe_mid_pull_stops_events_and_the_upstream(
    edge: ForgeApp, http: aiohttp.ClientSession, fake: FakeUpstream
) -> None:
    await fake.set_defaults(pull_steps=40, pull_gap_ms=50)  # ~4 s of progress
    async with await connect(edge, http) as ws:
        await subscribe(ws, "u", "pull", model="wsunsub:1b@tag=ws-unsub")
        assert (await next_frame(ws))["type"] == "event"
        await send(ws, {"type": "unsubscribe", "id": "u"})
        left = time.monotonic()
        await until_pong(ws)  # whatever was in flight before the unsubscribe is now read
        record = await fake.wait_closed("ws-unsub")
        assert record["client_closed_early"] and record["ended"] - left < 1.0
        with pytest.raises(TimeoutError):
            await next_frame(ws, timeout=0.3)  # nothing more for "u"
        # The id is free again, and unsubscribing an id that has no subscription is harmless.
        await send(ws, {"type": "unsubscribe", "id": "u"})
        assert await until_pong(ws) == []


async def test_service_status_streams_initial_states(local_edge: ForgeApp) -> None:
    async with aiohttp.ClientSession() as session, await connect(local_edge, session) as ws:
        await subscribe(ws, "s", "service_status", services=["ollama"])
        frame = await next_frame(ws)
        assert frame["type"] == "event" and frame["id"] == "s"
        assert frame["data"]["service"] == "ollama" and frame["data"]["initial"]
        assert frame["data"]["data"]["healthy"]
        await send(ws, {"type": "unsubscribe", "id": "s"})
        assert all(f["id"] == "s" for f in await until_pong(ws))


async def test_rpc_errors_become_error_frames(edge: ForgeApp, http: aiohttp.ClientSession) -> None:
    async with await connect(edge, http) as ws:
        # An unknown job: the core answers NOT_FOUND, the socket carries on.
        await subscribe(ws, "j", "job", job_id="nope")
        (frame,) = await frames_for(ws, "j")
        assert frame["type"] == "error" and frame["error"]["code"] == "NOT_FOUND"
        await subscribe(ws, "missing", "pull", model="doesnotexist:1b")
        frame = (await frames_for(ws, "missing"))[-1]  # after Ollama's "pulling manifest" event
        assert frame["type"] == "error" and frame["error"]["code"] == "MODEL_NOT_FOUND"
        await subscribe(ws, "empty", "pull")
        (frame,) = await frames_for(ws, "empty")
        assert frame["error"]["code"] == "INVALID_ARGUMENT"
        assert await until_pong(ws) == []


@pytest.mark.parametrize(
    ("raw", "code", "detail"),
    [
        ("{not json", "INVALID_ARGUMENT", "not valid JSON"),
        ("[1, 2]", "INVALID_ARGUMENT", "JSON object"),
        ('{"type": "shout"}', "INVALID_ARGUMENT", "unknown frame type"),
        ('{"type": "subscribe", "topic": "pull"}', "INVALID_ARGUMENT", "`id`"),
        ('{"type": "subscribe", "id": "x"}', "INVALID_ARGUMENT", "`topic`"),
        ('{"type": "subscribe", "id": "x", "topic": "pull", "params": [1]}', "INVALID_ARGUMENT", "`params`"),
        ('{"type": "unsubscribe"}', "INVALID_ARGUMENT", "`id`"),
        ('{"type": "subscribe", "id": "x", "topic": "weather"}', "NOT_FOUND", "unknown topic 'weather'"),
    ],
)
async def test_malformed_frames_get_frame_level_errors(local_edge: ForgeApp, raw: str, code: str, detail: str) -> None:
    async with aiohttp.ClientSession() as session, await connect(local_edge, session) as ws:
        await ws.send_str(raw)
        frame = await next_frame(ws)
        assert frame["type"] == "error" and frame["id"] is None
        assert frame["error"]["code"] == code and detail in frame["error"]["detail"]
        assert await until_pong(ws) == []  # still usable


async def test_bad_params_name_the_field_under_the_subscription_id(local_edge: ForgeApp) -> None:
    async with aiohttp.ClientSession() as session, await connect(local_edge, session) as ws:
        await subscribe(ws, "b", "pull", model="x:1b", bogus=1)
        frame = await next_frame(ws)
        assert frame["type"] == "error" and frame["id"] == "b"
        assert frame["error"]["code"] == "INVALID_ARGUMENT" and "bogus" in frame["error"]["detail"]
        await subscribe(ws, "b2", "pull", insecure="yes")
        frame = await next_frame(ws)
        assert frame["id"] == "b2" and "insecure" in frame["error"]["detail"]


async def test_binary_frames_are_refused_not_fatal(local_edge: ForgeApp) -> None:
    async with aiohttp.ClientSession() as session, await connect(local_edge, session) as ws:
        await ws.send_bytes(b'{"type": "ping"}')
        frame = await next_frame(ws)
        assert frame["type"] == "error" and frame["id"] is None and "binary" in frame["error"]["detail"]
        assert await until_pong(ws) == []


async def test_duplicate_id_is_refused_and_the_first_subscription_goes_on(
    local_edge: ForgeApp, fake: FakeUpstream
) -> None:
    await fake.set_defaults(pull_steps=4, pull_gap_ms=40)
    async with aiohttp.ClientSession() as session, await connect(local_edge, session) as ws:
        await subscribe(ws, "d", "pull", model="wsdup:1b")
        await subscribe(ws, "d", "pull", model="wsother:1b")
        frames: list[Frame] = []
        while not frames or frames[-1]["type"] != "complete":
            frames.append(await next_frame(ws))
    dup = [f for f in frames if f["type"] == "error"]
    assert len(dup) == 1 and dup[0]["id"] is None and dup[0]["error"]["code"] == "ALREADY_EXISTS"
    assert frames[-1] == {"type": "complete", "id": "d"}
    assert all(f["data"]["model"] == "wsdup:1b" for f in frames if f["type"] == "event")
    assert "wsother:1b" not in await fake.pulls()


async def test_an_id_is_reusable_once_its_stream_completed(local_edge: ForgeApp) -> None:
    async with aiohttp.ClientSession() as session, await connect(local_edge, session) as ws:
        for _ in range(2):
            await subscribe(ws, "again", "pull", model="wsagain:1b")
            assert (await frames_for(ws, "again"))[-1]["type"] == "complete"


async def test_metrics_topic_streams_live_snapshots(local_edge: ForgeApp) -> None:
    async with aiohttp.ClientSession() as session, await connect(local_edge, session) as ws:
        await subscribe(ws, "m", "metrics", interval_ms=50)
        events: list[Frame] = []
        async with asyncio.timeout(10):
            while len(events) < 2:
                frame = await next_frame(ws, 10)
                if frame.get("id") == "m":
                    assert frame["type"] == "event", frame
                    events.append(frame)
        assert all("data" in e for e in events)
        await send(ws, {"type": "unsubscribe", "id": "m"})
