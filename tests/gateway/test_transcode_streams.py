"""Transcoded server streams: NDJSON and SSE framing, in-band errors after the first byte, SSE heartbeats
before a slow first message, and cancellation — a client that leaves a stream (mid-stream or before the first
token) or a unary call closes the upstream request within 50 ms."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import pytest

from forge_rpc.server.app import ForgeApp
from forge_rpc.testing import running_forge
from gateway.app import build_edge, start_edge
from gateway.invoke import LocalInvoker
from gateway.keys import EdgeConfig
from tests.conftest import forge_config
from tests.fakes import FakeUpstream, fake_model

STREAM = "/api/v1/chat/completions:stream"
SSE = {"accept": "text/event-stream"}
WITHIN_S = 0.05


@asynccontextmanager
async def edge_with(fake: FakeUpstream, **options: Any) -> AsyncIterator[aiohttp.ClientSession]:
    """A core plus an edge built with a custom EdgeConfig (running_forge has no hook for one)."""
    await fake.reset()
    async with running_forge(forge_config(fake), http=False) as core:
        runner, port = await start_edge(build_edge(LocalInvoker(core.methods), EdgeConfig(**options)), "127.0.0.1", 0)
        try:
            async with aiohttp.ClientSession(base_url=f"http://127.0.0.1:{port}") as http:
                yield http
        finally:
            await runner.cleanup()


def ndjson(text: str) -> list[dict[str, Any]]:
    assert text.endswith("\n")
    return [json.loads(line) for line in text.split("\n") if line]


def sse_events(text: str) -> list[tuple[str, str]]:
    """(event name, data) per SSE event; comments are returned as ("comment", text)."""
    out = []
    for block in text.split("\n\n"):
        if not block:
            continue
        name, data = "message", []
        for line in block.split("\n"):
            if line.startswith(":"):
                out.append(("comment", line[1:].strip()))
            elif line.startswith("event: "):
                name = line.removeprefix("event: ")
            elif line.startswith("data: "):
                data.append(line.removeprefix("data: "))
        if data:
            out.append((name, "\n".join(data)))
    return out


def chat(model: str) -> dict[str, Any]:
    return {"message": "hi", "model": model}


async def test_ndjson_framing(http: aiohttp.ClientSession) -> None:
    async with http.post(STREAM, json=chat(fake_model("fake/gpt-fake", tokens=5, gap_ms=5))) as resp:
        assert resp.status == 200
        assert resp.content_type == "application/x-ndjson"
        assert resp.headers["x-accel-buffering"] == "no"
        assert resp.headers["cache-control"] == "no-cache"
        assert resp.headers["x-request-id"]
        events = ndjson(await resp.text())
    assert [e["sequence"] for e in events] == list(range(len(events)))
    text = "".join(e["delta"]["content"] for e in events if "delta" in e)
    assert text == "tok0 tok1 tok2 tok3 tok4 "
    assert events[0]["delta"]["role"] == "assistant"
    assert events[-2]["usage"]["completion_tokens"] == 5
    finish = events[-1]["finish"]
    assert finish["reason"] == "FINISH_REASON_STOP" and finish["provider"] == "openai"
    assert finish["id"] == resp.headers["x-request-id"]


async def test_sse_framing(http: aiohttp.ClientSession) -> None:
    async with http.post("/api/chat", json=chat(fake_model("fake/gpt-fake", tokens=3)), headers=SSE) as resp:
        assert resp.status == 200
        assert resp.content_type == "text/event-stream"
        assert resp.headers["x-accel-buffering"] == "no"
        text = await resp.text()
    events = sse_events(text)
    assert {name for name, _ in events} == {"message"}
    payloads = [json.loads(data) for _, data in events]
    assert "".join(p["delta"]["content"] for p in payloads if "delta" in p) == "tok0 tok1 tok2 "
    assert "finish" in payloads[-1]


async def test_messages_are_flushed_as_they_come(http: aiohttp.ClientSession) -> None:
    model = fake_model("fake/gpt-fake", tokens=3, gap_ms=300)
    async with http.post(STREAM, json=chat(model)) as resp:
        started = time.monotonic()
        first = json.loads(await resp.content.readline())
        assert "delta" in first
        assert time.monotonic() - started < 0.25  # the first token did not wait for the others


async def test_error_before_first_byte_is_an_http_error(http: aiohttp.ClientSession) -> None:
    async with http.post(STREAM, json=chat(fake_model("fake/gpt-fake", fail=429)), headers=SSE) as resp:
        assert resp.status == 429
        assert resp.content_type == "application/json"
        assert resp.headers["retry-after"]
        body = await resp.json()
    assert body["code"] == "PROVIDER_RATE_LIMITED"
    async with http.post(STREAM, json=chat("nope/x")) as resp:
        assert resp.status == 404
        assert (await resp.json())["code"] == "MODEL_NOT_FOUND"


async def test_ndjson_error_after_first_byte_is_in_band(http: aiohttp.ClientSession) -> None:
    async with http.post(STREAM, json=chat(fake_model("fake/gpt-fake", tokens=5, cut_after=2))) as resp:
        assert resp.status == 200
        events = ndjson(await resp.text())
    assert "delta" in events[0]
    last = events[-1]
    assert set(last) == {"error"}
    assert last["error"]["code"] == "PROVIDER_PROTOCOL"
    assert last["error"]["detail"] and last["error"]["error"]["code"] == 14


async def test_sse_error_after_first_byte_is_an_error_event(http: aiohttp.ClientSession) -> None:
    async with http.post(STREAM, json=chat(fake_model("fake/gpt-fake", tokens=5, cut_after=2)), headers=SSE) as resp:
        assert resp.status == 200
        events = sse_events(await resp.text())
    assert events[0][0] == "message"
    name, data = events[-1]
    assert name == "error"
    assert json.loads(data)["error"]["code"] == "PROVIDER_PROTOCOL"


async def test_sse_heartbeat_while_waiting_for_first_token(fake: FakeUpstream) -> None:
    async with edge_with(fake, sse_heartbeat_s=0.05) as http:
        async with http.post(STREAM, json=chat(fake_model("fake/gpt-fake", tokens=2, ttft_ms=400)), headers=SSE) as r:
            assert r.status == 200
            events = sse_events(await r.text())
        pings = [e for e in events if e == ("comment", "ping")]
        assert len(pings) >= 3
        first_data = next(i for i, (name, _) in enumerate(events) if name == "message")
        assert all(name == "comment" for name, _ in events[:first_data])
        assert all(name != "comment" for name, _ in events[first_data:])  # no pings once messages flow
        assert "finish" in json.loads(events[-1][1])
        # NDJSON has no comments: no pings there.
        async with http.post(STREAM, json=chat(fake_model("fake/gpt-fake", tokens=2, ttft_ms=200))) as resp:
            assert all("sequence" in e for e in ndjson(await resp.text()))
        # A failure after the pings started is in-band (the status line is already sent).
        model = fake_model("fake/gpt-fake", ttft_ms=200, cut_after=0)
        async with http.post(STREAM, json=chat(model), headers=SSE) as resp:
            assert resp.status == 200
            events = sse_events(await resp.text())
        assert events[0] == ("comment", "ping")
        assert events[-1][0] == "error"


def heartbeat_tasks() -> list[asyncio.Task[Any]]:
    return [t for t in asyncio.all_tasks() if "_Heartbeat" in getattr(t.get_coro(), "__qualname__", "")]


async def test_heartbeat_task_only_while_a_first_message_is_late(fake: FakeUpstream) -> None:
    async with edge_with(fake, sse_heartbeat_s=0.05) as http:
        async with http.post(STREAM, json=chat(fake_model("fake/gpt-fake", tokens=2)), headers=SSE) as resp:
            events = sse_events(await resp.text())
            assert not heartbeat_tasks()  # a fast first message never starts one (a timer handle only)
        assert all(name == "message" for name, _ in events)
        model = fake_model("fake/gpt-fake", tokens=2, ttft_ms=300)
        async with http.post(STREAM, json=chat(model), headers=SSE) as resp:
            assert await resp.content.readline() == b": ping\n"
            assert len(heartbeat_tasks()) == 1
            await resp.read()
        await asyncio.sleep(0.1)  # a leaked heartbeat would still be pinging
        assert not heartbeat_tasks()


async def test_oversized_body_is_413(fake: FakeUpstream) -> None:
    async with edge_with(fake, max_body_bytes=1024) as http:
        for path in ("/api/v1/chat", STREAM):
            async with http.post(path, json={"message": "x" * 2048, "model": "fake"}) as resp:
                assert resp.status == 413
                body = await resp.json()
                assert body["code"] == "PAYLOAD_TOO_LARGE" and "1024" in body["detail"]


async def until_upstream_started(fake: FakeUpstream, tag: str) -> None:
    for _ in range(200):
        if await fake.requests(tag=tag):
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"the upstream never saw request {tag}")


@pytest.mark.parametrize("model", ["fake/gpt-fake", "ollama/llama3.2"])
@pytest.mark.parametrize("accept", ["ndjson", "sse"])
async def test_disconnect_mid_stream_closes_upstream(
    edge: ForgeApp, fake: FakeUpstream, model: str, accept: str
) -> None:
    tag = f"rest-mid-{model}-{accept}"
    async with aiohttp.ClientSession(base_url=f"http://127.0.0.1:{edge.http_port}") as http:
        resp = await http.post(
            STREAM,
            json=chat(fake_model(model, tokens=500, gap_ms=20, tag=tag)),
            headers=SSE if accept == "sse" else None,
        )
        assert resp.status == 200
        await resp.content.readline()
        left_at = time.monotonic()
        resp.close()  # drops the connection
    record = await fake.wait_closed(tag)
    assert record["client_closed_early"]
    assert record["ended"] - left_at < WITHIN_S
    assert record["tokens_sent"] < 500


@pytest.mark.parametrize("accept", ["ndjson", "sse"])
async def test_disconnect_before_first_token_closes_upstream(edge: ForgeApp, fake: FakeUpstream, accept: str) -> None:
    tag = f"rest-ttft-{accept}"
    async with aiohttp.ClientSession(base_url=f"http://127.0.0.1:{edge.http_port}") as http:
        request = asyncio.create_task(
            http.post(
                STREAM,
                json=chat(fake_model("fake/gpt-fake", ttft_ms=3000, tag=tag)),
                headers=SSE if accept == "sse" else None,
            )
        )
        await until_upstream_started(fake, tag)
        left_at = time.monotonic()
        request.cancel()
        with pytest.raises(asyncio.CancelledError):
            await request
    record = await fake.wait_closed(tag)
    assert record["client_closed_early"] and record["tokens_sent"] == 0
    assert record["ended"] - left_at < WITHIN_S


async def test_disconnect_during_unary_call_closes_upstream(edge: ForgeApp, fake: FakeUpstream) -> None:
    tag = "rest-unary"
    async with aiohttp.ClientSession(base_url=f"http://127.0.0.1:{edge.http_port}") as http:
        request = asyncio.create_task(
            http.post("/api/v1/chat", json=chat(fake_model("fake/gpt-fake", ttft_ms=3000, tag=tag)))
        )
        await until_upstream_started(fake, tag)
        left_at = time.monotonic()
        request.cancel()
        with pytest.raises(asyncio.CancelledError):
            await request
    record = await fake.wait_closed(tag)
    assert record["client_closed_early"]
    assert record["ended"] - left_at < WITHIN_S
