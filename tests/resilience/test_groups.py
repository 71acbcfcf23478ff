"""Model groups through a real forge: two deployments at the fake upstream, one failing on demand, drive its
breaker open, route around it, probe it half-open after the cooldown (on a clock the test moves), and close it
again; streams retry only before their first token."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import aiohttp
import grpc
import pytest
from forge.chat.v1 import chat_pb2, chat_pb2_grpc
from forge.routing.v1 import routing_pb2, routing_pb2_grpc

from forge_rpc.server.app import ForgeApp
from forge_rpc.server.config import DeploymentConfig, RouterConfig
from forge_rpc.services.breaker_hook import BreakerBoard, open_deployments, worst_state
from forge_rpc.services.breakers import BreakerBoardView
from forge_rpc.testing import running_forge
from tests.fakes import FakeUpstream
from tests.resilience.conftest import (
    FakeClock,
    ask,
    at_fake,
    breakers,
    breakers_of,
    group_config,
    streamed,
    unary,
)


@asynccontextmanager
async def serving(
    fake: FakeUpstream, deployments: list[DeploymentConfig], router: RouterConfig
) -> AsyncIterator[tuple[ForgeApp, grpc.aio.Channel]]:
    await fake.reset()
    async with (
        running_forge(group_config(fake, deployments, router), http=False) as app,
        grpc.aio.insecure_channel(f"127.0.0.1:{app.grpc_port}") as channel,
    ):
        yield app, channel


async def tags(fake: FakeUpstream) -> list[str]:
    return [str(r["tag"]) for r in await fake.requests() if r["path"] == "/v1/chat/completions"]


def duo(fake: FakeUpstream, **bad: object) -> list[DeploymentConfig]:
    """A group whose first deployment fails as `bad` says and whose second is healthy."""
    return [at_fake(fake, "duo", "gpt-fake", tag="bad", **bad), at_fake(fake, "duo", "gpt-fake", tag="good")]


# Lowest latency picks a deployment never measured first, in configuration order: the failing one is always
# tried first while its breaker lets it, which makes every sequence below deterministic.
DETERMINISTIC = RouterConfig(routing_strategy="latency-based-routing", num_retries=1, allowed_fails=2, cooldown_time=30)


async def test_a_failing_deployment_opens_its_breaker_then_a_probe_closes_it(fake: FakeUpstream) -> None:
    async with serving(fake, duo(fake, fail=503, fail_times=3), DETERMINISTIC) as (app, channel):
        clock = FakeClock()
        breakers_of(app).clock = clock
        for _ in range(3):  # every call answered: the retry goes to the healthy deployment
            assert (await unary(channel, ask("duo"))).model == "duo"
        assert await tags(fake) == ["bad", "good", "bad", "good", "good"]
        listed = await breakers(channel)
        bad, good = listed["duo-0"], listed["duo-1"]
        assert (bad.status, bad.state, bad.failure_count, bad.failure_threshold) == (
            "open",
            routing_pb2.CIRCUIT_STATE_OPEN,
            2,
            2,
        )
        assert "503" in bad.last_error and bad.service == good.service and bad.model == "duo"
        assert bad.next_attempt_at.seconds == int(clock.now + 30)
        assert (good.status, good.failure_count) == ("closed", 0)

        clock.advance(30)
        assert (await breakers(channel))["duo-0"].status == "half_open"
        await unary(channel, ask("duo"))  # the probe fails (third failure): open again, the retry answers
        assert (await tags(fake))[5:] == ["bad", "good"]
        reopened = (await breakers(channel))["duo-0"]
        assert (reopened.status, reopened.failure_count) == ("open", 3)

        clock.advance(30)
        events = await streamed(channel, ask("duo"))  # this probe succeeds
        assert events[-1].finish.model == "duo"
        assert (await tags(fake))[7:] == ["bad"]
        closed = (await breakers(channel))["duo-0"]
        assert (closed.status, closed.failure_count) == ("closed", 0)


async def test_listing_filters_by_state_and_reset_closes(fake: FakeUpstream) -> None:
    router = RouterConfig(routing_strategy="latency-based-routing", num_retries=1, allowed_fails=1, cooldown_time=60)
    async with serving(fake, duo(fake, fail=500), router) as (_, channel):
        stub = routing_pb2_grpc.RoutingServiceStub(channel)
        await unary(channel, ask("duo"))
        opened = await stub.ListCircuitBreakers(
            routing_pb2.ListCircuitBreakersRequest(state=routing_pb2.CIRCUIT_STATE_OPEN)
        )
        assert [b.name for b in opened.circuit_breakers] == ["duo-0"]
        reset = await stub.ResetCircuitBreaker(routing_pb2.ResetCircuitBreakerRequest(name="duo-0"))
        assert (reset.status, reset.failure_count, reset.recovery_timeout_sec) == ("closed", 0, 60.0)
        first = await stub.ListCircuitBreakers(routing_pb2.ListCircuitBreakersRequest(page_size=1))
        second = await stub.ListCircuitBreakers(
            routing_pb2.ListCircuitBreakersRequest(page_size=1, page_token=first.next_page_token)
        )
        both = [*first.circuit_breakers, *second.circuit_breakers]
        assert [(b.name, b.status) for b in both] == [("duo-0", "closed"), ("duo-1", "closed")]
        assert not second.next_page_token
        await unary(channel, ask("duo"))  # reset: the deployment takes traffic again (and fails again)
        assert await tags(fake) == ["bad", "good", "bad", "good"]
        with pytest.raises(grpc.aio.AioRpcError) as missing:
            await stub.ResetCircuitBreaker(routing_pb2.ResetCircuitBreakerRequest(name="nope-0"))
        assert missing.value.code() == grpc.StatusCode.NOT_FOUND
        with pytest.raises(grpc.aio.AioRpcError) as unnamed:
            await stub.ResetCircuitBreaker(routing_pb2.ResetCircuitBreakerRequest())
        assert unnamed.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_every_deployment_open_is_unavailable_circuit_open(fake: FakeUpstream) -> None:
    router = RouterConfig(allowed_fails=1, cooldown_time=60)
    async with serving(fake, [at_fake(fake, "solo", "gpt-fake", fail=503, tag="solo")], router) as (_, channel):
        with pytest.raises(grpc.aio.AioRpcError) as first:
            await unary(channel, ask("solo"))
        assert "PROVIDER_UNAVAILABLE" in str(first.value.trailing_metadata())
        with pytest.raises(grpc.aio.AioRpcError) as second:
            await streamed(channel, ask("solo"))
        assert second.value.code() == grpc.StatusCode.UNAVAILABLE
        assert "CIRCUIT_OPEN" in str(second.value.trailing_metadata())
        assert "circuit breaker" in (second.value.details() or "")
        assert await tags(fake) == ["solo"]  # the open breaker kept the second call off the upstream


@pytest.mark.parametrize("stream", [False, True])
async def test_a_retry_before_the_first_token_is_invisible(fake: FakeUpstream, stream: bool) -> None:
    deployments = [at_fake(fake, "flaky", "gpt-fake", tokens=4, fail=503, fail_times=1, tag="flaky")]
    async with serving(fake, deployments, RouterConfig(num_retries=1)) as (_, channel):
        if stream:
            events = await streamed(channel, ask("flaky"))
            text = "".join(e.delta.content for e in events if e.WhichOneof("event") == "delta")
        else:
            text = (await unary(channel, ask("flaky"))).choices[0].message.content
        assert text == "tok0 tok1 tok2 tok3 "
        assert await tags(fake) == ["flaky", "flaky"]


async def test_a_stream_cut_after_its_first_tokens_is_never_retried(fake: FakeUpstream) -> None:
    deployments = [at_fake(fake, "cut", "gpt-fake", tokens=10, cut_after=3, tag="cut")]
    async with serving(fake, deployments, RouterConfig(num_retries=2)) as (_, channel):
        stub = chat_pb2_grpc.ChatServiceStub(channel)
        call = stub.StreamChatCompletion(chat_pb2.StreamChatCompletionRequest(chat=ask("cut")))
        received: list[chat_pb2.ChatEvent] = []
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            async for event in call:
                received.append(event)
        assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
        text = "".join(e.delta.content for e in received if e.WhichOneof("event") == "delta")
        # Tokens reached the client (aiohttp may drop what it buffered with the cut, never reorder it)…
        assert text and "tok0 tok1 tok2 ".startswith(text)
        assert [e.WhichOneof("event") for e in received][-2:] == ["error", "finish"]
        # …so the stream was not retried: one upstream request, no token sent twice.
        assert await tags(fake) == ["cut"]


async def test_a_stream_cut_before_its_first_token_is_retried(fake: FakeUpstream) -> None:
    deployments = [at_fake(fake, "cut0", "gpt-fake", tokens=10, cut_after=0, tag="cut0")]
    async with serving(fake, deployments, RouterConfig(num_retries=2, allowed_fails=5)) as (_, channel):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await streamed(channel, ask("cut0"))
        assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
        assert await tags(fake) == ["cut0", "cut0", "cut0"]


async def test_breakers_over_rest_and_as_the_health_views_read_them(fake: FakeUpstream) -> None:
    router = RouterConfig(routing_strategy="latency-based-routing", num_retries=1, allowed_fails=1, cooldown_time=60)
    await fake.reset()
    async with running_forge(group_config(fake, duo(fake, fail=503), router)) as app:
        async with aiohttp.ClientSession(base_url=f"http://127.0.0.1:{app.http_port}") as http:
            chat = {"model": "duo", "messages": [{"role": "user", "content": "hi"}]}
            async with http.post("/api/v1/chat/completions", json=chat) as resp:
                assert resp.status == 200
            for path in ("/api/v1/circuit-breakers", "/api/v1/health/circuit-breakers"):
                async with http.get(path, params={"state": "CIRCUIT_STATE_OPEN"}) as resp:
                    body = await resp.json()
                assert [(b["name"], b["status"], b["failure_count"]) for b in body["circuit_breakers"]] == [
                    ("duo-0", "open", 1)
                ]
            async with http.post("/api/v1/circuit-breakers/duo-0:reset", json={}) as resp:
                assert (resp.status, (await resp.json())["status"]) == (200, "closed")
        board: BreakerBoard = BreakerBoardView(app.directory, breakers_of(app))
        assert worst_state(board, "openai-1") == "closed"
        await breakers_of(app).record("duo-1", False, "down")
        assert worst_state(board, "openai-1") == "open"
        assert open_deployments(board) == {("openai-1", "duo")}
