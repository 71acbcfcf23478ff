"""Cancellation is a contract: when the caller leaves, the upstream HTTP request closes within milliseconds —
before the first token, mid-stream, for unary calls, and when the deadline passes."""

from __future__ import annotations

import asyncio
import time

import grpc
import pytest
from forge.chat.v1 import chat_pb2, chat_pb2_grpc

from tests.fakes import FakeUpstream, fake_model
from tests.rpc.test_chat import request

pytestmark = pytest.mark.asyncio

WITHIN_S = 0.05


async def until_upstream_started(fake: FakeUpstream, tag: str) -> None:
    for _ in range(200):
        if await fake.requests(tag=tag):
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"the upstream never saw request {tag}")


@pytest.mark.parametrize("model", ["fake/gpt-fake", "ollama/llama3.2"])
async def test_cancel_mid_stream_closes_upstream(channel: grpc.aio.Channel, fake: FakeUpstream, model: str) -> None:
    tag = f"mid-{model}"
    stub = chat_pb2_grpc.ChatServiceStub(channel)
    call = stub.StreamChatCompletion(
        chat_pb2.StreamChatCompletionRequest(chat=request(fake_model(model, tokens=500, gap_ms=20, tag=tag)))
    )
    await call.read()
    cancelled_at = time.monotonic()
    call.cancel()
    record = await fake.wait_closed(tag)
    assert record["client_closed_early"]
    assert record["ended"] - cancelled_at < WITHIN_S
    assert record["tokens_sent"] < 500


@pytest.mark.parametrize("model", ["fake/gpt-fake", "ollama/llama3.2"])
async def test_cancel_before_first_token_closes_upstream(
    channel: grpc.aio.Channel, fake: FakeUpstream, model: str
) -> None:
    tag = f"ttft-{model}"
    stub = chat_pb2_grpc.ChatServiceStub(channel)
    call = stub.StreamChatCompletion(
        chat_pb2.StreamChatCompletionRequest(chat=request(fake_model(model, ttft_ms=3000, tag=tag)))
    )
    await until_upstream_started(fake, tag)
    cancelled_at = time.monotonic()
    call.cancel()
    record = await fake.wait_closed(tag)
    assert record["client_closed_early"] and record["tokens_sent"] == 0
    assert record["ended"] - cancelled_at < WITHIN_S


@pytest.mark.parametrize("model", ["fake/gpt-fake", "ollama/llama3.2"])
async def test_cancel_unary_call_closes_upstream(channel: grpc.aio.Channel, fake: FakeUpstream, model: str) -> None:
    tag = f"unary-{model}"
    stub = chat_pb2_grpc.ChatServiceStub(channel)
    call = stub.CreateChatCompletion(
        chat_pb2.CreateChatCompletionRequest(chat=request(fake_model(model, ttft_ms=3000, tag=tag)))
    )
    await until_upstream_started(fake, tag)
    cancelled_at = time.monotonic()
    call.cancel()
    record = await fake.wait_closed(tag)
    assert record["client_closed_early"]
    assert record["ended"] - cancelled_at < WITHIN_S


async def test_deadline_closes_upstream(channel: grpc.aio.Channel, fake: FakeUpstream) -> None:
    stub = chat_pb2_grpc.ChatServiceStub(channel)
    started = time.monotonic()
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.CreateChatCompletion(
            chat_pb2.CreateChatCompletionRequest(chat=request(fake_model("fake/gpt-fake", ttft_ms=3000, tag="dl"))),
            timeout=0.4,
        )
    assert info.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    record = await fake.wait_closed("dl")
    assert record["client_closed_early"]
    assert record["ended"] - started < 0.4 + WITHIN_S
