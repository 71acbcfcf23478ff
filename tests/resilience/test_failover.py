"""Failover over model groups, driven by scripted attempts: which deployment each attempt goes to, how long it
waits (recorded, never slept), where it falls back, and what the breakers and the observer hear."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable

import pytest

from forge_rpc.domain import (
    DeadlineExceeded,
    Deployment,
    ErrorCode,
    FieldViolation,
    ForgeError,
    InvalidArgument,
    ModelCatalog,
    ProviderRateLimited,
    ProviderUnavailable,
)
from forge_rpc.domain.balancing import LowestLatency
from forge_rpc.domain.breaker import BreakerPolicy, CircuitBreakers, CircuitState, Gate
from forge_rpc.domain.catalog import Candidate, ModelGroup
from forge_rpc.domain.failover import Failover, Served
from forge_rpc.domain.retry import Fallbacks, RetryPolicy
from tests.resilience.conftest import FakeClock

CATALOG = ModelCatalog(
    [
        Deployment("main", "p1", "a"),
        Deployment("main", "p2", "b"),
        Deployment("backup", "p3", "c"),
        Deployment("big", "p4", "d"),
    ]
)


def too_long() -> ForgeError:
    """What the OpenAI adapter makes of OpenAI's 400 `context_length_exceeded`."""
    detail = "HTTP 400: This model's maximum context length is 8 tokens. However, your messages resulted in 9"
    return ForgeError(
        f"provider 'openai' rejected the request: {detail}", ErrorCode.INVALID_ARGUMENT, "INVALID_ARGUMENT"
    )


class Script:
    """Per deployment id, what its successive attempts do: raise the error, or answer with the id."""

    def __init__(self, **outcomes: list[ForgeError | None]) -> None:
        self.outcomes = {k.replace("_", "-"): list(v) for k, v in outcomes.items()}
        self.calls: list[str] = []
        self.limits: list[float | None] = []

    async def __call__(self, c: Candidate, limit: float | None) -> str:
        self.calls.append(c.id)
        self.limits.append(limit)
        planned = self.outcomes.get(c.id, [])
        err = planned.pop(0) if planned else None
        if err is not None:
            raise err
        return c.id


class Sleeps:
    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


def failover(
    retry: RetryPolicy, fallbacks: Fallbacks | None = None, clock: FakeClock | None = None, opens_after: int = 2
) -> tuple[Failover, Sleeps, list[tuple[str, bool]]]:
    sleeps, heard = Sleeps(), []
    f = Failover(
        retry,
        fallbacks,
        CircuitBreakers(BreakerPolicy(opens_after, 30.0), clock=clock or FakeClock()),
        LowestLatency(),  # deterministic: the first unmeasured deployment, in configuration order
        observer=lambda pid, ok, ms: heard.append((pid, ok)),
        rng=random.Random(0),
        sleep=sleeps,
    )
    return f, sleeps, heard


async def resolve(name: str) -> ModelGroup | None:
    return CATALOG.group(name)


async def run(
    f: Failover, script: Callable[[Candidate, float | None], Awaitable[str]], timeout: float | None = None
) -> Served[str]:
    main = CATALOG.group("main")
    assert main is not None
    return await f.run("main", main, resolve, script, timeout)


def down(detail: str = "HTTP 503") -> ForgeError:
    return ProviderUnavailable("openai", detail)


async def test_a_retry_goes_to_a_deployment_not_tried_yet_without_waiting() -> None:
    f, sleeps, heard = failover(RetryPolicy(num_retries=2))
    script = Script(main_0=[down()])
    served = await run(f, script)
    assert (served.value, served.attempts, script.calls) == ("main-1", 2, ["main-0", "main-1"])
    assert sleeps.waits == []
    await served.attempt.succeeded()
    assert heard == [("p1", False), ("p2", True)]
    assert f.load.in_flight("main-0") == f.load.in_flight("main-1") == 0


async def test_retrying_a_tried_deployment_waits_as_it_asked() -> None:
    f, sleeps, _ = failover(RetryPolicy(num_retries=3, max_wait_s=10.0))
    script = Script(main_0=[ProviderRateLimited("openai", 4.0, "HTTP 429")], main_1=[down()])
    served = await run(f, script)
    assert script.calls == ["main-0", "main-1", "main-0"]
    assert served.attempts == 3
    assert sleeps.waits == [4.0]


async def test_without_retry_after_the_wait_backs_off_exponentially() -> None:
    f, sleeps, _ = failover(RetryPolicy(num_retries=4, backoff_s=0.1, min_wait_s=0.05), opens_after=10)
    script = Script(main_0=[down(), down(), down()], main_1=[down()])
    served = await run(f, script)
    assert script.calls == ["main-0", "main-1", "main-0", "main-0", "main-0"]
    assert served.attempts == 5
    # Retries 2, 3 and 4 reuse a tried deployment: 0.2, 0.4 and 0.8 s, each with up to half taken off (jitter).
    assert all(step / 2 <= w <= step for w, step in zip(sleeps.waits, (0.2, 0.4, 0.8), strict=True))


async def test_a_deployment_asking_for_longer_than_the_cap_is_not_retried() -> None:
    f, sleeps, _ = failover(RetryPolicy(num_retries=3, max_wait_s=2.0), opens_after=10)
    script = Script(main_0=[ProviderRateLimited("openai", 30.0, "HTTP 429")], main_1=[down(), down()])
    served = await run(f, script)
    # main-1 is retried (after a backoff step); main-0 asked for 30 s and is left alone.
    assert script.calls == ["main-0", "main-1", "main-1", "main-1"]
    assert served.value == "main-1"
    assert len(sleeps.waits) == 2


async def test_when_every_deployment_asks_for_too_long_the_last_error_surfaces() -> None:
    f, sleeps, _ = failover(RetryPolicy(num_retries=3, max_wait_s=2.0))
    limited = [ProviderRateLimited("openai", 30.0, "HTTP 429")]
    script = Script(main_0=list(limited), main_1=[ProviderRateLimited("openai", 60.0, "HTTP 429: again")])
    with pytest.raises(ForgeError) as caught:
        await run(f, script)
    assert caught.value.reason == "PROVIDER_RATE_LIMITED"
    assert "again" in caught.value.message
    assert caught.value.metadata["attempts"] == "2"
    assert sleeps.waits == []


async def test_retries_exhausted_fall_back_along_the_chain() -> None:
    f, sleeps, _ = failover(RetryPolicy(num_retries=1), Fallbacks({"main": ("nowhere", "backup", "big")}))
    limited = ProviderRateLimited("x", None, "HTTP 429")
    script = Script(main_0=[down()], main_1=[down()], backup_0=[limited, limited])
    served = await run(f, script)
    # Each group gets its own retries: backup's one retry waits the 429's default second.
    assert script.calls == ["main-0", "main-1", "backup-0", "backup-0", "big-0"]
    assert sleeps.waits == [1.0]
    assert (served.value, served.attempts, served.group.name) == ("big-0", 5, "big")


async def test_a_prompt_too_long_skips_retries_and_takes_the_context_chain() -> None:
    f, _, heard = failover(
        RetryPolicy(num_retries=3), Fallbacks({"main": ("backup",)}, context_window={"main": ("big",)})
    )
    script = Script(main_0=[too_long()])
    served = await run(f, script)
    assert script.calls == ["main-0", "big-0"]
    assert served.value == "big-0"
    assert heard == []  # the deployment did nothing wrong: no breaker failure, no health signal
    assert (await f.breakers.states(["main-0"]))[0].failures == 0


async def test_without_context_fallbacks_a_prompt_too_long_takes_the_general_chain() -> None:
    f, _, _ = failover(RetryPolicy(), Fallbacks({"main": ("backup",)}))
    served = await run(f, Script(main_0=[too_long()]))
    assert served.value == "backup-0"


async def test_a_bad_request_is_final() -> None:
    f, _, _ = failover(RetryPolicy(num_retries=3), Fallbacks({"main": ("backup",)}))
    bad = InvalidArgument([FieldViolation("chat.temperature", "too hot")])
    script = Script(main_0=[bad])
    with pytest.raises(ForgeError) as caught:
        await run(f, script)
    assert caught.value is bad
    assert script.calls == ["main-0"]


async def test_failures_open_the_breaker_and_later_calls_skip_the_deployment() -> None:
    f, _, _ = failover(RetryPolicy(num_retries=1))
    script = Script(main_0=[down(), down()])
    for _ in range(2):
        await run(f, script)
    assert script.calls == ["main-0", "main-1", "main-0", "main-1"]
    assert await f.breakers.gate("main-0") is Gate.BLOCKED
    await run(f, script)
    assert script.calls[-1] == "main-1"
    assert len(script.calls) == 5


async def test_all_breakers_open_is_circuit_open_or_a_fallback() -> None:
    clock = FakeClock()
    f, _, _ = failover(RetryPolicy(), clock=clock)
    for key in ("main-0", "main-1"):
        await f.breakers.record(key, False, "HTTP 503: overloaded")
        await f.breakers.record(key, False, "HTTP 503: overloaded")
    clock.advance(10)
    script = Script()
    with pytest.raises(ForgeError) as caught:
        await run(f, script)
    err = caught.value
    assert (err.reason, err.code.name) == ("CIRCUIT_OPEN", "UNAVAILABLE")
    assert err.retry_after_s == pytest.approx(20.0)
    assert "overloaded" in err.message
    assert script.calls == []
    f.fallbacks = Fallbacks(default=("backup",))
    assert (await run(f, script)).value == "backup-0"


async def test_a_cooled_down_deployment_takes_the_next_call_as_its_probe() -> None:
    clock = FakeClock()
    f, _, _ = failover(RetryPolicy(num_retries=1), clock=clock)
    await f.breakers.record("main-1", False, "x")
    await f.breakers.record("main-1", False, "x")
    f.load.observe("main-0", 1.0)  # main-0 is measured: left alone, the balancer would pick main-1 anyway
    f.load.observe("main-1", 500.0)
    clock.advance(30)
    served = await run(f, Script())
    assert served.value == "main-1"
    assert (await f.breakers.states(["main-1"]))[0].state is CircuitState.HALF_OPEN
    await served.attempt.succeeded()
    assert (await f.breakers.states(["main-1"]))[0].state is CircuitState.CLOSED


async def test_a_cancelled_attempt_gives_its_probe_back() -> None:
    clock = FakeClock()
    f, _, heard = failover(RetryPolicy(), clock=clock)
    for key in ("main-0", "main-1"):
        await f.breakers.record(key, False, "x")
        await f.breakers.record(key, False, "x")
    clock.advance(30)

    async def hangs(c: Candidate, limit: float | None) -> str:
        await asyncio.Event().wait()
        return c.id

    task = asyncio.create_task(run(f, hangs))
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await f.breakers.gate("main-0") is Gate.PROBE
    assert f.load.in_flight("main-0") == 0
    assert heard == []


async def test_no_wait_outlasts_the_callers_deadline() -> None:
    f, sleeps, _ = failover(RetryPolicy(num_retries=2))
    script = Script(main_0=[ProviderRateLimited("x", 5.0, "429")], main_1=[ProviderRateLimited("x", 5.0, "429")])
    with pytest.raises(ForgeError):
        await run(f, script, timeout=3.0)
    assert script.calls == ["main-0", "main-1"]
    assert sleeps.waits == []
    assert all(limit is not None and limit <= 3.0 for limit in script.limits)


async def test_the_routers_own_timeout_bounds_each_attempt_and_is_retried() -> None:
    f, _, heard = failover(RetryPolicy(num_retries=1, timeout_s=2.0))
    script = Script(main_0=[DeadlineExceeded("provider did not answer in time")])
    served = await run(f, script, timeout=60.0)
    assert served.value == "main-1"
    assert script.limits == [2.0, 2.0]
    assert heard == [("p1", False)]
