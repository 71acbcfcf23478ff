"""The circuit breaker's state machine, on a clock the test moves: no sleeps."""

from __future__ import annotations

import pytest

from forge_rpc.domain.breaker import BreakerPolicy, BreakerState, CircuitBreakers, CircuitState, Gate
from tests.resilience.conftest import FakeClock

POLICY = BreakerPolicy(failure_threshold=3, cooldown_s=30.0, probe_lease_s=60.0)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def board(clock: FakeClock) -> CircuitBreakers:
    return CircuitBreakers(POLICY, clock=clock)


async def state(board: CircuitBreakers, key: str = "d") -> BreakerState:
    return (await board.states([key]))[0]


async def fail(board: CircuitBreakers, times: int, key: str = "d") -> None:
    for i in range(times):
        await board.record(key, False, f"boom {i}")


async def test_opens_after_threshold_consecutive_failures(board: CircuitBreakers, clock: FakeClock) -> None:
    await fail(board, 2)
    assert await board.gate("d") is Gate.PASS
    await fail(board, 1)
    s = await state(board)
    assert (s.state, s.failures, s.last_error) == (CircuitState.OPEN, 3, "boom 0")
    assert (s.opened_at, s.retry_at) == (clock.now, clock.now + 30.0)
    assert await board.gate("d") is Gate.BLOCKED


async def test_a_success_resets_the_consecutive_count(board: CircuitBreakers) -> None:
    await fail(board, 2)
    await board.record("d", True)
    await fail(board, 2)
    assert (await state(board)).state is CircuitState.CLOSED
    assert (await state(board)).failures == 2


async def test_cooldown_then_exactly_one_probe(board: CircuitBreakers, clock: FakeClock) -> None:
    await fail(board, 3)
    clock.advance(29.9)
    assert await board.gate("d") is Gate.BLOCKED
    clock.advance(0.1)
    assert (await state(board)).effective(clock.now) is CircuitState.HALF_OPEN
    assert await board.gate("d") is Gate.PROBE
    first = await board.claim_probe("d")
    assert first
    assert await board.claim_probe("d") is None
    assert await board.gate("d") is Gate.BLOCKED


async def test_probe_success_closes(board: CircuitBreakers, clock: FakeClock) -> None:
    await fail(board, 3)
    clock.advance(30)
    assert await board.claim_probe("d")
    await board.record("d", True)
    s = await state(board)
    assert (s.state, s.failures) == (CircuitState.CLOSED, 0)
    assert await board.gate("d") is Gate.PASS


async def test_probe_failure_reopens_for_another_cooldown(board: CircuitBreakers, clock: FakeClock) -> None:
    await fail(board, 3)
    clock.advance(30)
    assert await board.claim_probe("d")
    await board.record("d", False, "still down")
    s = await state(board)
    assert (s.state, s.failures, s.last_error) == (CircuitState.OPEN, 4, "still down")
    assert s.retry_at == clock.now + 30
    assert await board.gate("d") is Gate.BLOCKED


async def test_an_abandoned_probe_lets_the_next_call_probe(board: CircuitBreakers, clock: FakeClock) -> None:
    await fail(board, 3)
    clock.advance(30)
    token = await board.claim_probe("d")
    assert token
    await board.release("d", "someone-else")  # only the holder can give it back
    assert await board.gate("d") is Gate.BLOCKED
    await board.release("d", token)
    assert await board.gate("d") is Gate.PROBE
    assert await board.claim_probe("d")


async def test_a_probe_lease_expires(board: CircuitBreakers, clock: FakeClock) -> None:
    await fail(board, 3)
    clock.advance(30)
    assert await board.claim_probe("d")
    clock.advance(59)
    assert await board.claim_probe("d") is None
    clock.advance(1)
    assert await board.claim_probe("d")


async def test_success_of_a_call_admitted_before_opening_does_not_close(board: CircuitBreakers) -> None:
    await fail(board, 3)
    await board.record("d", True)
    assert (await state(board)).state is CircuitState.OPEN


async def test_reset_closes_and_breakers_are_independent(board: CircuitBreakers) -> None:
    await fail(board, 3, "a")
    await fail(board, 1, "b")
    assert (await state(board, "a")).state is CircuitState.OPEN
    assert (await board.reset("a")) == BreakerState()
    assert await board.gate("a") is Gate.PASS
    assert (await state(board, "b")).failures == 1


def test_state_survives_its_json_form() -> None:
    s = BreakerState(CircuitState.HALF_OPEN, 4, 10.5, 70.5, "tok-1", "HTTP 503")
    assert BreakerState.from_json(s.to_json()) == s
