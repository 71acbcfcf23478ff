"""A client that leaves `/v1/chat/completions` closes the upstream request within 50 ms: mid-stream, before the
first token, and during a unary call — by closing the raw response or cancelling the SDK call's task."""

from __future__ import annotations

import asyncio
import contextlib
import time

import aiohttp
import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam

from forge_rpc.server.app import ForgeApp
from tests.fakes import FakeUpstream, fake_model
from tests.rpc.test_cancellation import until_upstream_started

pytestmark = pytest.mark.asyncio

WITHIN_S = 0.05
USER: list[ChatCompletionMessageParam] = [{"role": "user", "content": "hello there world"}]
MODELS = ["fake/gpt-fake", "ollama/llama3.2"]


def sdk(edge: ForgeApp) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=f"http://127.0.0.1:{edge.http_port}/v1", api_key="x", max_retries=0)


async def cancel(task: asyncio.Task[object]) -> float:
    cancelled_at = time.monotonic()
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    return cancelled_at


@pytest.mark.parametrize("model", MODELS)
async def test_close_raw_response_mid_stream(http: aiohttp.ClientSession, fake: FakeUpstream, model: str) -> None:
    tag = f"oa-mid-{model}"
    body = {"model": fake_model(model, tokens=500, gap_ms=20, tag=tag), "messages": USER, "stream": True}
    resp = await http.post("/v1/chat/completions", json=body)
    assert resp.status == 200
    first = await resp.content.readuntil(b"\n\n")
    assert first.startswith(b"data: {")
    await resp.content.readuntil(b"\n\n")  # a content chunk: the upstream is mid-stream
    closed_at = time.monotonic()
    resp.close()
    record = await fake.wait_closed(tag)
    assert record["client_closed_early"] and record["tokens_sent"] < 500
    assert record["ended"] - closed_at < WITHIN_S


@pytest.mark.parametrize("model", MODELS)
async def test_close_sdk_stream_mid_stream(edge: ForgeApp, fake: FakeUpstream, model: str) -> None:
    tag = f"oa-sdk-mid-{model}"
    async with sdk(edge) as client:
        stream = await client.chat.completions.create(
            model=fake_model(model, tokens=500, gap_ms=20, tag=tag),
            messages=USER,
            stream=True,
        )
        seen = 0
        async for _ in stream:
            seen += 1
            if seen == 3:
                break
        closed_at = time.monotonic()
        await stream.close()
        record = await fake.wait_closed(tag)
    assert record["client_closed_early"] and record["tokens_sent"] < 500
    assert record["ended"] - closed_at < WITHIN_S


@pytest.mark.parametrize("model", MODELS)
async def test_leave_before_first_token(http: aiohttp.ClientSession, fake: FakeUpstream, model: str) -> None:
    # No byte is sent before the first token (heartbeats start after 15 s), so the client is still waiting for
    # the headers: cancelling that wait closes the connection.
    tag = f"oa-ttft-{model}"
    body = {"model": fake_model(model, ttft_ms=3000, tag=tag), "messages": USER, "stream": True}
    task = asyncio.create_task(http.post("/v1/chat/completions", json=body))
    await until_upstream_started(fake, tag)
    cancelled_at = await cancel(task)
    record = await fake.wait_closed(tag)
    assert record["client_closed_early"] and record["tokens_sent"] == 0
    assert record["ended"] - cancelled_at < WITHIN_S


@pytest.mark.parametrize("model", MODELS)
async def test_cancel_sdk_unary_call(edge: ForgeApp, fake: FakeUpstream, model: str) -> None:
    tag = f"oa-unary-{model}"
    async with sdk(edge) as client:
        task = asyncio.create_task(
            client.chat.completions.create(model=fake_model(model, ttft_ms=3000, tag=tag), messages=USER)
        )
        await until_upstream_started(fake, tag)
        cancelled_at = await cancel(task)
        record = await fake.wait_closed(tag)
    assert record["client_closed_early"]
    assert record["ended"] - cancelled_at < WITHIN_S


async def test_cancel_sdk_stream_before_first_token(edge: ForgeApp, fake: FakeUpstream) -> None:
    tag = "oa-sdk-ttft"
    async with sdk(edge) as client:
        task = asyncio.create_task(
            client.chat.completions.create(
                model=fake_model("fake/gpt-fake", ttft_ms=3000, tag=tag),
                messages=USER,
                stream=True,
            )
        )
        await until_upstream_started(fake, tag)
        cancelled_at = await cancel(task)
        record = await fake.wait_closed(tag)
    assert record["client_closed_early"] and record["tokens_sent"] == 0
    assert record["ended"] - cancelled_at < WITHIN_S
