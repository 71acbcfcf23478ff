"""Failover: runs one call over a model group and its fallback chain — picks a deployment the breakers let
through, retries with backoff, falls back, and reports every attempt's outcome to the breakers, the load
tracker and the passive-health observer.

An attempt is whatever the caller makes of a deployment: a unary completion, or opening a stream up to its first
event. Once a stream has delivered anything the attempt is committed: nothing is retried after the first token,
so a client never sees text twice.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from .balancing import Balancer, LoadTracker, SimpleShuffle
from .breaker import BreakerPolicy, CircuitBreakers, Gate
from .catalog import Candidate, ModelGroup
from .errors import ForgeError
from .retry import CircuitOpen, FailureKind, Fallbacks, RetryPolicy, classify, counts_against_deployment

__all__ = ["Attempt", "Failover", "OutcomeObserver", "Served"]

T = TypeVar("T")

OutcomeObserver = Callable[[str, bool, float], None]
"""(provider_id, ok, latency_ms) for every attempt that says something about its deployment."""

GroupResolver = Callable[[str], Awaitable[ModelGroup | None]]


class Attempt:
    """One call on one deployment: holds its load slot and probe until its outcome is known, reported once."""

    __slots__ = ("_failover", "_open", "candidate", "latency_ms", "probe", "started")

    def __init__(self, failover: Failover, candidate: Candidate, probe: str) -> None:
        self._failover = failover
        self.candidate = candidate
        self.probe = probe
        self.started = time.perf_counter()
        self.latency_ms = 0.0
        self._open = True
        failover.load.started(candidate.id)

    def _close(self) -> bool:
        if not self._open:
            return False
        self._open = False
        self._failover.load.ended(self.candidate.id)
        return True

    async def succeeded(self) -> None:
        if self._close():
            f = self._failover
            await f.breakers.record(self.candidate.id, True)
            if f.observer is not None:
                f.observer(self.candidate.route.deployment.provider_id, True, self.latency_ms)

    async def failed(self, err: ForgeError, kind: FailureKind) -> None:
        if not self._close():
            return
        f = self._failover
        if not counts_against_deployment(err, kind):
            await f.breakers.release(self.candidate.id, self.probe)
            return
        await f.breakers.record(self.candidate.id, False, err.message)
        if f.observer is not None:
            elapsed = (time.perf_counter() - self.started) * 1000
            f.observer(self.candidate.route.deployment.provider_id, False, elapsed)

    async def abandoned(self) -> None:
        """The caller left before a verdict: the probe goes back, nothing is counted."""
        if self._close():
            await self._failover.breakers.release(self.candidate.id, self.probe)


@dataclass(slots=True)
class Served(Generic[T]):
    value: T
    attempt: Attempt
    """Still open: the caller reports the outcome (at once for unary calls, when a stream ends)."""
    group: ModelGroup
    attempts: int


@dataclass(slots=True)
class _Failed:
    error: ForgeError
    kind: FailureKind
    attempts: int


class Failover:
    def __init__(
        self,
        retry: RetryPolicy | None = None,
        fallbacks: Fallbacks | None = None,
        breakers: CircuitBreakers | None = None,
        balancer: Balancer | None = None,
        *,
        load: LoadTracker | None = None,
        observer: OutcomeObserver | None = None,
        rng: random.Random | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.retry = retry or RetryPolicy()
        self.fallbacks = fallbacks or Fallbacks()
        self.breakers = breakers or CircuitBreakers(BreakerPolicy())
        self.balancer = balancer or SimpleShuffle(rng)
        self.load = load or LoadTracker()
        self.observer = observer
        self._rng = rng or random.Random()
        self._sleep = sleep

    async def run(
        self,
        model: str,
        first: ModelGroup,
        resolve: GroupResolver,
        call: Callable[[Candidate, float | None], Awaitable[T]],
        timeout: float | None,
    ) -> Served[T]:
        """`call(candidate, attempt_timeout)` once per attempt until one succeeds; the last error otherwise.
        `first` is the requested group; fallback groups come from `resolve`."""
        deadline = None if timeout is None else time.monotonic() + timeout
        # A call keeps the settings it started with, whatever a config reload does meanwhile.
        retry, fallbacks = self.retry, self.fallbacks
        group, visited, attempts = first, {first.name}, 0
        while True:
            outcome = await self._in_group(group, call, retry, deadline, attempts)
            if isinstance(outcome, Served):
                return outcome
            attempts = outcome.attempts
            if outcome.kind is FailureKind.FINAL:
                raise _annotated(outcome.error, attempts)
            nxt = None
            for name in fallbacks.chain(model or first.name, outcome.kind):
                if name not in visited:
                    visited.add(name)
                    nxt = await resolve(name)
                    if nxt is not None:
                        break
            if nxt is None:
                raise _annotated(outcome.error, attempts)
            group = nxt

    async def _in_group(
        self,
        group: ModelGroup,
        call: Callable[[Candidate, float | None], Awaitable[T]],
        retry: RetryPolicy,
        deadline: float | None,
        attempts: int,
    ) -> Served[T] | _Failed:
        tried: dict[str, ForgeError] = {}
        retries = 0
        while True:
            pick = await self._pick(group, tried, retry)
            if pick is None:
                last = next(reversed(tried.values()), None)
                return _Failed(last or await self._circuit_open(group), FailureKind.RETRY, attempts)
            candidate, probe = pick
            previous = tried.get(candidate.id)
            if previous is not None:
                # Every deployment that could take the retry has failed once: wait as this one asked.
                wait = retry.wait_before(retries, previous, self._rng)
                if wait is None or (deadline is not None and time.monotonic() + wait >= deadline):
                    await self.breakers.release(candidate.id, probe)
                    return _Failed(next(reversed(tried.values())), FailureKind.RETRY, attempts)
                try:
                    await self._sleep(wait)
                except BaseException:
                    await self.breakers.release(candidate.id, probe)
                    raise
            attempts += 1
            attempt = Attempt(self, candidate, probe)
            limit, by_router = _attempt_timeout(retry, deadline)
            try:
                value = await call(candidate, limit)
            except ForgeError as err:
                kind = classify(err, by_router)
                await attempt.failed(err, kind)
                if kind is not FailureKind.RETRY or retries >= retry.num_retries:
                    return _Failed(err, kind, attempts)
                tried.pop(candidate.id, None)  # re-insert: the most recent failure comes last
                tried[candidate.id] = err
                retries += 1
                continue
            except BaseException:
                await attempt.abandoned()
                raise
            attempt.latency_ms = (time.perf_counter() - attempt.started) * 1000
            self.load.observe(candidate.id, attempt.latency_ms)
            return Served(value, attempt, group, attempts)

    async def _pick(
        self, group: ModelGroup, tried: dict[str, ForgeError], retry: RetryPolicy
    ) -> tuple[Candidate, str] | None:
        fresh: list[Candidate] = []
        again: list[Candidate] = []
        for c in group.candidates:
            gate = await self.breakers.gate(c.id)
            if gate is Gate.PASS:
                failed = tried.get(c.id)
                if failed is None:
                    fresh.append(c)
                elif (failed.retry_after_s or 0.0) <= retry.max_wait_s:
                    again.append(c)  # one that asked for a longer pause than forge waits is not retried
            elif gate is Gate.PROBE and c.id not in tried:
                # A cooled-down deployment takes the next call, its one probe, so it rejoins promptly.
                token = await self.breakers.claim_probe(c.id)
                if token is not None:
                    return c, token
        pool = fresh or again
        if not pool:
            return None
        return self.balancer.pick(pool, self.load), ""

    async def _circuit_open(self, group: ModelGroup) -> ForgeError:
        ids = [c.id for c in group.candidates]
        states = await self.breakers.states(ids)
        now = self.breakers.clock()
        wait = min((s.retry_at - now for s in states), default=self.breakers.policy.cooldown_s)
        last = next((s.last_error for s in states if s.last_error), "")
        return CircuitOpen(group.name, wait, last)


def _attempt_timeout(retry: RetryPolicy, deadline: float | None) -> tuple[float | None, bool]:
    """The attempt's limit, and whether it is the router's own `timeout` rather than the caller's deadline."""
    own = retry.timeout_s
    if deadline is None:
        return own, own is not None
    remaining = max(deadline - time.monotonic(), 0.001)
    if own is not None and own < remaining:
        return own, True
    return remaining, False


def _annotated(err: ForgeError, attempts: int) -> ForgeError:
    if attempts > 1:
        err.metadata.setdefault("attempts", str(attempts))
    return err
