"""A circuit breaker per deployment: closed → open after N consecutive failures → half-open after the cooldown,
when one probe call is let through; its success closes the breaker, its failure opens it again.

The state machine is pure (functions from state to state) so that the memory store and the Redis store
(`adapters/coordination/breaker_redis.py`, shared by replicas) apply the very same transitions. Times are
wall-clock seconds from an injectable clock: replicas compare them, which monotonic clocks would not allow.
"""

from __future__ import annotations

import enum
import itertools
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any, Protocol

__all__ = [
    "BreakerPolicy",
    "BreakerState",
    "BreakerStore",
    "CircuitBreakers",
    "CircuitState",
    "Clock",
    "Gate",
    "MemoryBreakerStore",
    "claimed",
    "failed",
    "released",
    "succeeded",
]

Clock = Callable[[], float]
_ERROR_CHARS = 300


class CircuitState(enum.Enum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class Gate(enum.Enum):
    """What a breaker lets through right now."""

    PASS = "pass"
    """Closed: any call."""
    PROBE = "probe"
    """Cooled down: one call may try, once it has claimed the probe."""
    BLOCKED = "blocked"


@dataclass(frozen=True, slots=True)
class BreakerPolicy:
    failure_threshold: int = 3
    """Consecutive failures that open the breaker (`allowed_fails`)."""
    cooldown_s: float = 5.0
    """How long an open breaker refuses calls before it lets a probe through (`cooldown_time`)."""
    probe_lease_s: float = 60.0
    """How long a claimed probe keeps others out: a replica that died mid-probe must not wedge the breaker."""


@dataclass(frozen=True, slots=True)
class BreakerState:
    state: CircuitState = CircuitState.CLOSED
    failures: int = 0
    """Consecutive failures."""
    opened_at: float = 0.0
    retry_at: float = 0.0
    """OPEN: when a probe may go. HALF_OPEN: when the probe's lease ends."""
    probe: str = ""
    """HALF_OPEN: the token of the call holding the probe ("" when nobody holds it)."""
    last_error: str = ""

    def effective(self, now: float) -> CircuitState:
        """The state a caller meets: an open breaker whose cooldown is over is half-open (ready for a probe)."""
        if self.state is CircuitState.OPEN and now >= self.retry_at:
            return CircuitState.HALF_OPEN
        return self.state

    def gate(self, now: float) -> Gate:
        if self.state is CircuitState.CLOSED:
            return Gate.PASS
        if now >= self.retry_at or (self.state is CircuitState.HALF_OPEN and not self.probe):
            return Gate.PROBE
        return Gate.BLOCKED

    def to_json(self) -> dict[str, Any]:
        return {
            "state": self.state.value,
            "failures": self.failures,
            "opened_at": self.opened_at,
            "retry_at": self.retry_at,
            "probe": self.probe,
            "last_error": self.last_error,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> BreakerState:
        return cls(
            CircuitState(data.get("state", "closed")),
            int(data.get("failures", 0)),
            float(data.get("opened_at", 0.0)),
            float(data.get("retry_at", 0.0)),
            str(data.get("probe", "")),
            str(data.get("last_error", "")),
        )


CLOSED = BreakerState()


def claimed(s: BreakerState, now: float, token: str, policy: BreakerPolicy) -> BreakerState:
    """The probe taken by `token`, if the breaker offers one now; else unchanged."""
    if s.gate(now) is not Gate.PROBE:
        return s
    return replace(s, state=CircuitState.HALF_OPEN, probe=token, retry_at=now + policy.probe_lease_s)


def succeeded(s: BreakerState) -> BreakerState:
    # While open, only the probe decides: a call admitted before the breaker opened proves little.
    return s if s.state is CircuitState.OPEN else CLOSED


def failed(s: BreakerState, now: float, error: str, policy: BreakerPolicy) -> BreakerState:
    error = error[:_ERROR_CHARS]
    count = s.failures + 1
    if s.state is CircuitState.OPEN:
        return replace(s, failures=count, last_error=error)
    if s.state is CircuitState.HALF_OPEN or count >= policy.failure_threshold:
        return BreakerState(CircuitState.OPEN, count, now, now + policy.cooldown_s, "", error)
    return replace(s, failures=count, last_error=error)


def released(s: BreakerState, token: str) -> BreakerState:
    """A probe whose caller left without a verdict: the next call may probe at once."""
    if s.state is CircuitState.HALF_OPEN and s.probe == token:
        return replace(s, probe="", retry_at=0.0)
    return s


class BreakerStore(Protocol):
    """Where breaker states live: in this process, or shared by every replica."""

    def peek(self, key: str) -> BreakerState:
        """The last state this replica knows, without any I/O (for synchronous views)."""
        ...

    async def read(self, key: str) -> BreakerState:
        """The state, possibly a little stale (a shared store may answer from a short-lived local copy)."""
        ...

    async def update(self, key: str, change: Callable[[BreakerState], BreakerState]) -> BreakerState:
        """Applies `change` to the current state atomically and returns the result."""
        ...

    async def read_fresh(self, keys: Sequence[str]) -> list[BreakerState]:
        """Current states, never from a local copy (for listings)."""
        ...


class MemoryBreakerStore:
    """One replica's breakers; atomic because the event loop runs one transition at a time."""

    def __init__(self) -> None:
        self._states: dict[str, BreakerState] = {}

    def peek(self, key: str) -> BreakerState:
        return self._states.get(key, CLOSED)

    async def read(self, key: str) -> BreakerState:
        return self._states.get(key, CLOSED)

    async def update(self, key: str, change: Callable[[BreakerState], BreakerState]) -> BreakerState:
        new = change(self._states.get(key, CLOSED))
        self._states[key] = new
        return new

    async def read_fresh(self, keys: Sequence[str]) -> list[BreakerState]:
        return [self._states.get(k, CLOSED) for k in keys]


class CircuitBreakers:
    """The breakers of every deployment, keyed by deployment id, over a swappable store."""

    def __init__(self, policy: BreakerPolicy, store: BreakerStore | None = None, clock: Clock = time.time) -> None:
        self.policy = policy
        self.store: BreakerStore = store or MemoryBreakerStore()
        self.clock = clock
        # Probe tokens must be unique across replicas sharing a store.
        self._prefix = uuid.uuid4().hex[:12]
        self._seq = itertools.count(1)

    def use_store(self, store: BreakerStore) -> None:
        """Switches to a shared store (Redis) once it is connected, before anything serves."""
        self.store = store

    def peek(self, key: str) -> BreakerState:
        return self.store.peek(key)

    async def gate(self, key: str) -> Gate:
        return (await self.store.read(key)).gate(self.clock())

    async def claim_probe(self, key: str) -> str | None:
        """Takes the single probe; None when another call (on any replica) has it. "" when closed meanwhile."""
        now, token = self.clock(), f"{self._prefix}-{next(self._seq)}"
        after = await self.store.update(key, lambda s: claimed(s, now, token, self.policy))
        if after.state is CircuitState.CLOSED:
            return ""
        return token if after.probe == token else None

    async def record(self, key: str, ok: bool, error: str = "") -> None:
        if ok:
            current = await self.store.read(key)
            if current.state is CircuitState.CLOSED and current.failures == 0:
                return  # the common case writes nothing, so a shared store costs no round trip
            await self.store.update(key, succeeded)
            return
        now = self.clock()
        await self.store.update(key, lambda s: failed(s, now, error, self.policy))

    async def release(self, key: str, probe: str) -> None:
        if probe:
            await self.store.update(key, lambda s: released(s, probe))

    async def reset(self, key: str) -> BreakerState:
        return await self.store.update(key, lambda _: CLOSED)

    async def states(self, keys: Sequence[str]) -> list[BreakerState]:
        return await self.store.read_fresh(keys)
