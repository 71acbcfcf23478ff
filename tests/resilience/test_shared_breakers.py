"""Breakers shared through Redis: what one replica sees fail, every replica skips, and exactly one replica
sends the half-open probe. Real redis-server; two forge processes' worth of state in one test."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import grpc
import pytest_asyncio
from redis.asyncio import Redis

from forge_rpc.adapters.coordination.breaker_redis import RedisBreakerStore
from forge_rpc.domain.breaker import BreakerPolicy, CircuitBreakers, CircuitState, Gate
from forge_rpc.server.config import RouterConfig
from forge_rpc.testing import running_forge
from tests.fakes import FakeUpstream
from tests.resilience.conftest import FakeClock, ask, at_fake, breakers, group_config, unary

POLICY = BreakerPolicy(failure_threshold=3, cooldown_s=30.0)


@pytest_asyncio.fixture
async def redis(redis_url: str) -> AsyncIterator[Redis]:
    client = Redis.from_url(redis_url)
    for key in await client.keys("forge:breaker:*"):
        await client.delete(key)
    yield client
    await client.aclose()


def replica(redis: Redis, clock: FakeClock) -> CircuitBreakers:
    # No local copy: these tests look at the shared state the moment another replica wrote it.
    return CircuitBreakers(POLICY, RedisBreakerStore(redis, max_staleness_s=0.0), clock)


async def test_failures_from_every_replica_count_toward_one_breaker(redis: Redis) -> None:
    clock = FakeClock()
    a, b = replica(redis, clock), replica(redis, clock)
    await a.record("d", False, "HTTP 503 from a")
    await b.record("d", False, "HTTP 503 from b")
    assert await a.gate("d") is Gate.PASS
    await a.record("d", False, "HTTP 503 again")
    assert await b.gate("d") is Gate.BLOCKED
    state = (await b.states(["d"]))[0]
    assert (state.state, state.failures, state.last_error) == (CircuitState.OPEN, 3, "HTTP 503 again")
    assert await redis.ttl("forge:breaker:d") > 0  # a removed deployment's state expires on its own


async def test_concurrent_writes_are_never_lost(redis: Redis) -> None:
    clock = FakeClock()
    board = CircuitBreakers(BreakerPolicy(failure_threshold=1000), RedisBreakerStore(redis), clock)
    other = CircuitBreakers(BreakerPolicy(failure_threshold=1000), RedisBreakerStore(redis), clock)
    await asyncio.gather(*(r.record("d", False, "x") for r in (board, other) for _ in range(25)))
    assert (await board.states(["d"]))[0].failures == 50


async def test_one_probe_across_replicas(redis: Redis) -> None:
    clock = FakeClock()
    replicas = [replica(redis, clock) for _ in range(4)]
    for _ in range(3):
        await replicas[0].record("d", False, "down")
    clock.advance(30)
    tokens = await asyncio.gather(*(r.claim_probe("d") for r in replicas))
    assert sum(1 for t in tokens if t) == 1
    holder = next(r for r, t in zip(replicas, tokens, strict=True) if t)
    await holder.record("d", True)
    assert all([await r.gate("d") is Gate.PASS for r in replicas])


async def test_a_local_copy_spares_round_trips_but_not_for_long(redis: Redis) -> None:
    clock = FakeClock()
    cached = CircuitBreakers(POLICY, RedisBreakerStore(redis, max_staleness_s=60.0), clock)
    writer = replica(redis, clock)
    assert await cached.gate("d") is Gate.PASS  # read once, then remembered
    for _ in range(3):
        await writer.record("d", False, "down")
    assert await cached.gate("d") is Gate.PASS
    assert cached.peek("d").state is CircuitState.CLOSED
    assert (await cached.states(["d"]))[0].state is CircuitState.OPEN  # listings always read Redis
    assert await cached.gate("d") is Gate.BLOCKED


async def test_two_forges_share_their_breakers(fake: FakeUpstream, redis_url: str, redis: Redis) -> None:
    await fake.reset()
    deployments = [
        at_fake(fake, "duo", "gpt-fake", fail=503, tag="bad"),
        at_fake(fake, "duo", "gpt-fake", tag="good"),
    ]
    router = RouterConfig(routing_strategy="latency-based-routing", num_retries=1, allowed_fails=1, cooldown_time=60)
    config = group_config(fake, deployments, router, redis_url=redis_url)
    async with (
        running_forge(config, http=False) as one,
        running_forge(config, http=False) as two,
        grpc.aio.insecure_channel(f"127.0.0.1:{one.grpc_port}") as first,
        grpc.aio.insecure_channel(f"127.0.0.1:{two.grpc_port}") as second,
    ):
        await unary(first, ask("duo"))  # the bad deployment fails once on the first forge: open for both
        assert (await breakers(second))["duo-0"].status == "open"
        await unary(second, ask("duo"))
        tags = [r["tag"] for r in await fake.requests() if r["path"] == "/v1/chat/completions"]
        assert tags == ["bad", "good", "good"]  # the second forge never tried the bad one
        assert await redis.exists("forge:breaker:duo-0")
