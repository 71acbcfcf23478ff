"""Circuit-breaker states in Redis, shared by every replica: a deployment one replica saw fail is skipped by
all, and exactly one replica sends the half-open probe.

Transitions are the domain's own functions, applied optimistically: read, compute, then a compare-and-set
script writes only if nobody wrote in between (else read again), so the shared store cannot drift from the
in-process one. Reads on the hot path are answered from a
local copy at most `max_staleness_s` old: a closed breaker with no failures costs no round trip per request.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import orjson
from redis.asyncio import Redis

from ...domain.breaker import BreakerState

__all__ = ["RedisBreakerStore"]

_CLOSED = BreakerState()

# KEYS[1] the breaker; ARGV: the value read ("" for none), the new value, its TTL in seconds.
_COMPARE_AND_SET = """
local current = redis.call('GET', KEYS[1])
if (current or '') ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[3])
return 1
"""


class RedisBreakerStore:
    def __init__(
        self,
        redis: Redis,
        *,
        prefix: str = "forge:breaker:",
        max_staleness_s: float = 0.5,
        ttl_s: int = 7 * 24 * 3600,
    ) -> None:
        """`ttl_s` lets the state of a deployment removed from the configuration expire on its own."""
        self._redis = redis
        self._prefix = prefix
        self._staleness = max_staleness_s
        self._ttl = ttl_s
        self._cache: dict[str, tuple[float, BreakerState]] = {}
        self._cas = redis.register_script(_COMPARE_AND_SET)

    def _remember(self, key: str, state: BreakerState) -> BreakerState:
        self._cache[key] = (time.monotonic(), state)
        return state

    def peek(self, key: str) -> BreakerState:
        cached = self._cache.get(key)
        return cached[1] if cached is not None else _CLOSED

    async def read(self, key: str) -> BreakerState:
        cached = self._cache.get(key)
        if cached is not None and time.monotonic() - cached[0] < self._staleness:
            return cached[1]
        return self._remember(key, _decode(await self._redis.get(self._prefix + key)))

    async def update(self, key: str, change: Callable[[BreakerState], BreakerState]) -> BreakerState:
        name = self._prefix + key
        while True:
            raw = await self._redis.get(name)
            current = _decode(raw)
            new = change(current)
            if new == current:
                return self._remember(key, current)
            written = await self._cas(keys=[name], args=[raw or b"", orjson.dumps(new.to_json()), self._ttl])
            if written:
                return self._remember(key, new)
            # Another replica wrote first: apply the change to what it wrote.

    async def read_fresh(self, keys: Sequence[str]) -> list[BreakerState]:
        if not keys:
            return []
        raws = await self._redis.mget([self._prefix + k for k in keys])
        return [self._remember(k, _decode(raw)) for k, raw in zip(keys, raws, strict=True)]


def _decode(raw: bytes | str | None) -> BreakerState:
    if raw is None:
        return _CLOSED
    return BreakerState.from_json(orjson.loads(raw))
