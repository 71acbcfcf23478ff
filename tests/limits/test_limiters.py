"""Both limiter backends against the same expectations: all-or-nothing reservations, exact counts under
concurrency, settles that move tokens and spend to the real use, stream slots released. The in-process one runs
on an injected clock; the Redis one on a real redis-server's own clock."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from redis.asyncio import Redis

from forge_rpc.adapters.coordination.limiter_memory import MemoryLimiter
from forge_rpc.adapters.coordination.limiter_redis import RedisLimiter
from forge_rpc.domain.limits import WINDOW_MS, BudgetPeriod, Check, Kind, Limiter
from tests.limits.conftest import BACKENDS, unique_prefix

pytestmark = pytest.mark.asyncio


class Clock:
    def __init__(self) -> None:
        self.ms = 1_700_000_000_000

    def __call__(self) -> int:
        return self.ms


@pytest_asyncio.fixture(params=BACKENDS)
async def limiter(request: pytest.FixtureRequest, redis_url: str) -> AsyncIterator[Limiter]:
    if request.param == "memory":
        yield MemoryLimiter(BudgetPeriod(), Clock())
        return
    redis = Redis.from_url(redis_url)
    try:
        yield RedisLimiter(redis, unique_prefix(), BudgetPeriod(), stream_lease_ms=60_000)
    finally:
        await redis.aclose()


def rid() -> str:
    return uuid.uuid4().hex


async def test_concurrent_reservations_admit_exactly_the_limit(limiter: Limiter) -> None:
    checks = [Check("ip:1.2.3.4", Kind.REQUESTS, 7, 1)]
    verdicts = await asyncio.gather(*(limiter.reserve(rid(), checks) for _ in range(40)))
    admitted = [v for v in verdicts if v.admitted]
    assert len(admitted) == 7
    assert sorted(v.standings[0].remaining for v in admitted) == list(range(7))
    refused = [v for v in verdicts if not v.admitted]
    # The bucket refills one request every 60/7 s; Redis' clock moves while the test runs.
    assert all(0 < v.retry_after_ms <= -(-WINDOW_MS // 7) for v in refused)


async def test_a_refusal_reserves_nothing_on_any_counter(limiter: Limiter) -> None:
    requests = Check("user:a", Kind.REQUESTS, 10, 1)
    tokens = Check("user:a", Kind.TOKENS, 100, 80)
    assert (await limiter.reserve(rid(), [requests, tokens])).admitted
    refused = await limiter.reserve(rid(), [requests, tokens])
    assert not refused.admitted and refused.standings[0].check == tokens
    assert refused.standings[0].remaining == 20
    # The refused call took no request: 9 more fit, not 8.
    smaller = Check("user:a", Kind.TOKENS, 100, 1)
    verdicts = [await limiter.reserve(rid(), [requests, smaller]) for _ in range(10)]
    assert sum(v.admitted for v in verdicts) == 9


async def test_settling_moves_tokens_to_what_was_used(limiter: Limiter) -> None:
    reserve = Check("key:k", Kind.TOKENS, 100, 90)
    first = await limiter.reserve("r1", [reserve])
    assert first.admitted
    assert not (await limiter.reserve("r2", [reserve])).admitted
    await limiter.settle("r1", [reserve], first.period, used_tokens=5, used_nano=0)
    second = await limiter.reserve("r3", [reserve])
    assert second.admitted and second.standings[0].remaining <= 5
    # Using more than reserved is charged too: the bucket goes into debt and refuses until it drains.
    await limiter.settle("r3", [reserve], second.period, used_tokens=400, used_nano=0)
    later = await limiter.reserve("r4", [Check("key:k", Kind.TOKENS, 100, 1)])
    assert not later.admitted and later.retry_after_ms > WINDOW_MS


async def test_stream_slots_are_held_until_settled(limiter: Limiter) -> None:
    slot = Check("user:s", Kind.STREAMS, 2, 1)
    a, b = await limiter.reserve("a", [slot]), await limiter.reserve("b", [slot])
    assert a.admitted and b.admitted
    third = await limiter.reserve("c", [slot])
    assert not third.admitted and third.retry_after_ms > 0
    await limiter.settle("a", [slot], a.period, 0, 0)
    assert (await limiter.reserve("c", [slot])).admitted


async def test_budgets_cannot_be_overspent_by_concurrent_reservations(limiter: Limiter) -> None:
    budget = 1_000_000  # nano-USD
    checks = [Check("user:b", Kind.SPEND, budget, 300_000)]
    verdicts = await asyncio.gather(*(limiter.reserve(rid(), checks) for _ in range(20)))
    assert sum(v.admitted for v in verdicts) == 3
    refused = next(v for v in verdicts if not v.admitted)
    assert refused.standings[0].remaining == 100_000
    # The period ends at the next calendar month: that is when to retry.
    assert 0 < refused.retry_after_ms <= 31 * 86_400_000
    # Settled to a cheaper real cost, the rest of the budget is usable again.
    admitted = [v for v in verdicts if v.admitted]
    await limiter.settle("any", checks, admitted[0].period, 0, used_nano=100_000)
    assert (await limiter.reserve(rid(), checks)).admitted


async def test_a_request_larger_than_the_limit_is_refused_for_good(limiter: Limiter) -> None:
    verdict = await limiter.reserve(rid(), [Check("ip:x", Kind.TOKENS, 100, 101)])
    assert not verdict.admitted and verdict.retry_after_ms == -1


async def test_memory_limiter_refills_with_time() -> None:
    clock = Clock()
    limiter = MemoryLimiter(BudgetPeriod(), clock)
    checks = [Check("ip:t", Kind.REQUESTS, 3, 1)]
    assert [(await limiter.reserve(rid(), checks)).admitted for _ in range(4)] == [True, True, True, False]
    clock.ms += WINDOW_MS // 3 - 1
    assert not (await limiter.reserve(rid(), checks)).admitted
    clock.ms += 1
    assert (await limiter.reserve(rid(), checks)).admitted


async def test_memory_budget_restarts_with_the_next_period() -> None:
    clock = Clock()
    period = BudgetPeriod(3600)
    limiter = MemoryLimiter(period, clock)
    checks = [Check("user:p", Kind.TOKEN_QUOTA, 10, 10)]
    assert (await limiter.reserve(rid(), checks)).admitted
    refused = await limiter.reserve(rid(), checks)
    assert not refused.admitted and refused.retry_after_ms == period.end_ms(clock.ms) - clock.ms
    clock.ms = period.end_ms(clock.ms)
    assert (await limiter.reserve(rid(), checks)).admitted
