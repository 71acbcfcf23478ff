"""Providers without a lean adapter go through litellm's own client code (here pointed at the fake's
OpenAI wire format): streaming, unary, errors and cancellation behave as on the hot path."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import grpc
import pytest
import pytest_asyncio
from forge.chat.v1 import chat_pb2, chat_pb2_grpc

from forge_rpc.testing import running_forge
from tests.conftest import forge_config
from tests.fakes import FakeUpstream, fake_model
from tests.rpc.rich_status import reason
from tests.rpc.test_cancellation import WITHIN_S
from tests.rpc.test_chat import collect, request, text_of

pytestmark = pytest.mark.asyncio


@pytest_asyncio.fixture(scope="module")
async def lite(fake: FakeUpstream) -> AsyncIterator[chat_pb2_grpc.ChatServiceAsyncStub]:
    async with (
        running_forge(forge_config(fake, litellm=True), http=False) as app,
        grpc.aio.insecure_channel(f"127.0.0.1:{app.grpc_port}") as ch,
    ):
        yield chat_pb2_grpc.ChatServiceStub(ch)


async def test_stream_through_litellm(lite: chat_pb2_grpc.ChatServiceAsyncStub) -> None:
    events = await collect(lite, request(fake_model("lite/gpt-fake", tokens=7)))
    assert text_of(events) == "".join(f"tok{i} " for i in range(7))
    assert events[-2].usage.completion_tokens == 7
    assert events[-1].finish.provider == "openai"


async def test_unary_through_litellm(lite: chat_pb2_grpc.ChatServiceAsyncStub) -> None:
    reply = await lite.CreateChatCompletion(
        chat_pb2.CreateChatCompletionRequest(chat=request(fake_model("lite/gpt-fake", tokens=4)))
    )
    assert reply.response == "tok0 tok1 tok2 tok3 "
    assert reply.usage.completion_tokens == 4


async def test_litellm_rate_limit_maps_to_resource_exhausted(lite: chat_pb2_grpc.ChatServiceAsyncStub) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await lite.CreateChatCompletion(
            chat_pb2.CreateChatCompletionRequest(chat=request(fake_model("lite/gpt-fake", fail=429)))
        )
    assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert reason(info.value) == "PROVIDER_RATE_LIMITED"


async def test_cancel_closes_the_litellm_upstream(lite: chat_pb2_grpc.ChatServiceAsyncStub, fake: FakeUpstream) -> None:
    tag = "lite-cancel"
    call = lite.StreamChatCompletion(
        chat_pb2.StreamChatCompletionRequest(chat=request(fake_model("lite/gpt-fake", tokens=500, gap_ms=20, tag=tag)))
    )
    await call.read()
    cancelled_at = time.monotonic()
    call.cancel()
    record = await fake.wait_closed(tag)
    assert record["client_closed_early"]
    assert record["ended"] - cancelled_at < WITHIN_S
