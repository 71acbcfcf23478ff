"""Rate limits through a real forge, both backends: exact counts, RESOURCE_EXHAUSTED with QuotaFailure and
RetryInfo, token reservations settled to the real use, concurrent-stream slots, per-model limits, exemptions."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import grpc
import pytest
from forge.chat.v1 import chat_pb2, chat_pb2_grpc
from forge.models.v1 import models_pb2, models_pb2_grpc
from forge.routing.v1 import routing_pb2, routing_pb2_grpc
from google.rpc import error_details_pb2

from forge_rpc.domain.limits import Rates
from forge_rpc.server.app import ForgeApp
from forge_rpc.server.config import ForgeConfig
from forge_rpc.testing import running_forge
from tests.fakes import FakeUpstream, fake_model
from tests.limits.conftest import limited
from tests.rpc.rich_status import detail, reason

pytestmark = pytest.mark.asyncio


@asynccontextmanager
async def grpc_forge(config: ForgeConfig) -> AsyncIterator[tuple[ForgeApp, grpc.aio.Channel]]:
    async with (
        running_forge(config, http=False) as app,
        grpc.aio.insecure_channel(f"127.0.0.1:{app.grpc_port}") as channel,
    ):
        yield app, channel


def chat(model: str = "fake", max_tokens: int | None = None) -> chat_pb2.ChatRequest:
    request = chat_pb2.ChatRequest(model=model, messages=[chat_pb2.Message(role="user", content="hello there world")])
    if max_tokens is not None:
        request.max_tokens = max_tokens
    return request


def metadata_dict(md: object) -> dict[str, str]:
    return {k: v for k, v in (md or ()) if isinstance(v, str)}  # type: ignore[attr-defined]


async def test_anonymous_limit_admits_exactly_n(fake: FakeUpstream, backend: str | None) -> None:
    async with grpc_forge(limited(fake, backend, anonymous=Rates(rpm=3))) as (_, channel):
        stub = models_pb2_grpc.ModelsServiceStub(channel)
        remaining = []
        for _ in range(3):
            call = stub.ListModels(models_pb2.ListModelsRequest())
            await call
            initial = metadata_dict(await call.initial_metadata())
            assert initial["x-ratelimit-limit-requests"] == "3"
            remaining.append(initial["x-ratelimit-remaining-requests"])
        assert remaining == ["2", "1", "0"]
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await stub.ListModels(models_pb2.ListModelsRequest())
    err = refused.value
    assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert reason(err) == "RATE_LIMIT_EXCEEDED"
    (violation,) = detail(err, error_details_pb2.QuotaFailure).violations
    assert violation.subject == "ip:127.0.0.1"
    assert "3 requests per minute" in violation.description
    delay = detail(err, error_details_pb2.RetryInfo).retry_delay
    assert 0 < delay.seconds + delay.nanos / 1e9 <= 20  # one request's share of the minute
    trailing = metadata_dict(err.trailing_metadata())
    assert trailing["x-ratelimit-remaining-requests"] == "0"


async def test_health_probes_are_never_limited(fake: FakeUpstream) -> None:
    async with grpc_forge(limited(fake, anonymous=Rates(rpm=1))) as (_, channel):
        stub = routing_pb2_grpc.RoutingServiceStub(channel)
        for _ in range(3):
            await stub.GetHealth(routing_pb2.GetHealthRequest())


async def test_tokens_are_reserved_up_front_and_settled_to_the_real_count(
    fake: FakeUpstream, backend: str | None
) -> None:
    # "hello there world" reserves 13 prompt tokens (estimated) + max_tokens; the fake reports 3 + 5 used.
    async with grpc_forge(limited(fake, backend, anonymous=Rates(tpm=100))) as (_, channel):
        stub = chat_pb2_grpc.ChatServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as too_big:
            await stub.CreateChatCompletion(
                chat_pb2.CreateChatCompletionRequest(chat=chat(fake_model("fake/gpt-fake", tokens=5), 90))
            )
        assert too_big.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "reserves 103" in (too_big.value.details() or "")
        with pytest.raises(AssertionError):  # it can never fit: waiting would not help, so no RetryInfo
            detail(too_big.value, error_details_pb2.RetryInfo)

        request = chat_pb2.CreateChatCompletionRequest(chat=chat(fake_model("fake/gpt-fake", tokens=5), 60))
        first = stub.CreateChatCompletion(request)
        assert (await first).usage.total_tokens == 8
        assert metadata_dict(await first.initial_metadata())["x-ratelimit-remaining-tokens"] == "27"
        # Without the settle (73 still held) a second 73 would not fit in 100.
        second = stub.CreateChatCompletion(request)
        await second
        remaining = int(metadata_dict(await second.initial_metadata())["x-ratelimit-remaining-tokens"])
        assert 19 <= remaining <= 20  # 100 − 8 − 73, plus what drained meanwhile (100 a minute)


async def test_a_reservation_that_would_exceed_the_tokens_per_minute_is_refused(
    fake: FakeUpstream, backend: str | None
) -> None:
    async with grpc_forge(limited(fake, backend, anonymous=Rates(tpm=100))) as (_, channel):
        stub = chat_pb2_grpc.ChatServiceStub(channel)
        slow = chat_pb2.StreamChatCompletionRequest(chat=chat(fake_model("fake/gpt-fake", ttft_ms=3000), 60))
        running = stub.StreamChatCompletion(slow)
        await running.initial_metadata()  # admitted: 73 tokens held while it runs
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await stub.CreateChatCompletion(chat_pb2.CreateChatCompletionRequest(chat=chat("fake", 60)))
        running.cancel()
    assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    delay = detail(refused.value, error_details_pb2.RetryInfo).retry_delay.seconds
    assert 0 < delay <= 60
    assert metadata_dict(refused.value.trailing_metadata())["x-ratelimit-limit-tokens"] == "100"


async def test_concurrent_stream_limit(fake: FakeUpstream, backend: str | None) -> None:
    config = limited(fake, backend, anonymous=Rates(concurrent_streams=1))
    async with grpc_forge(config) as (_, channel):
        stub = chat_pb2_grpc.ChatServiceStub(channel)
        slow = chat_pb2.StreamChatCompletionRequest(chat=chat(fake_model("fake/gpt-fake", tokens=40, gap_ms=20)))
        first = stub.StreamChatCompletion(slow)
        event = await first.read()
        assert isinstance(event, chat_pb2.ChatEvent) and event.WhichOneof("event") == "delta"
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            async for _ in stub.StreamChatCompletion(chat_pb2.StreamChatCompletionRequest(chat=chat())):
                pass
        assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "concurrent streams" in (refused.value.details() or "")
        # Unary calls hold no stream slot.
        await stub.CreateChatCompletion(chat_pb2.CreateChatCompletionRequest(chat=chat()))
        while await first.read() is not grpc.aio.EOF:  # the first stream ends: its slot is released with it
            pass
        events = [e async for e in stub.StreamChatCompletion(chat_pb2.StreamChatCompletionRequest(chat=chat()))]
        assert events[-1].WhichOneof("event") == "finish"


async def test_a_cancelled_stream_releases_its_slot(fake: FakeUpstream, backend: str | None) -> None:
    config = limited(fake, backend, anonymous=Rates(concurrent_streams=1))
    async with grpc_forge(config) as (_, channel):
        stub = chat_pb2_grpc.ChatServiceStub(channel)
        slow = chat_pb2.StreamChatCompletionRequest(chat=chat(fake_model("fake/gpt-fake", tokens=500, gap_ms=20)))
        first = stub.StreamChatCompletion(slow)
        await first.read()
        first.cancel()
        request = chat_pb2.StreamChatCompletionRequest(chat=chat())
        refusals: list[grpc.StatusCode] = []
        for _ in range(200):  # the server notices the cancel on its own schedule
            try:
                events = [e async for e in stub.StreamChatCompletion(request)]
                break
            except grpc.aio.AioRpcError as err:
                refusals.append(err.code())
                await asyncio.sleep(0.01)
        else:
            raise AssertionError("the cancelled stream never released its slot")
        assert set(refusals) <= {grpc.StatusCode.RESOURCE_EXHAUSTED}
        assert events[-1].WhichOneof("event") == "finish"


async def test_per_model_limit_is_shared_by_every_model_a_pattern_matches(fake: FakeUpstream) -> None:
    config = limited(fake, models=(("fake/*", Rates(rpm=2)),))
    async with grpc_forge(config) as (_, channel):
        stub = chat_pb2_grpc.ChatServiceStub(channel)
        for model in ("fake/gpt-fake", "fake/gpt-fake-2"):
            await stub.CreateChatCompletion(chat_pb2.CreateChatCompletionRequest(chat=chat(model)))
        await stub.CreateChatCompletion(chat_pb2.CreateChatCompletionRequest(chat=chat("fake")))  # not matched
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await stub.CreateChatCompletion(chat_pb2.CreateChatCompletionRequest(chat=chat("fake/other")))
    (violation,) = detail(refused.value, error_details_pb2.QuotaFailure).violations
    assert violation.subject == "model:fake/*"
