"""The shared limiter: one atomic script reserves all of a call's counters on Redis, a second settles them.

Every replica pointed at the same Redis (and key prefix) shares the counters, so the limits hold exactly across
replicas. One round trip per admitted call, and one more after it only when it reserved something to settle
(tokens, a stream slot, spend).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError

from ...domain import ErrorCode, ForgeError
from ...domain.limits import BudgetPeriod, Check, Kind, Standing, Verdict
from .limiter_lua import RESERVE, SETTLE
from .limiter_memory import wall_clock_ms

__all__ = ["RedisLimiter"]

log = logging.getLogger("forge.limits")

_CODE = {
    Kind.REQUESTS: "b",
    Kind.TOKENS: "b",
    Kind.STREAMS: "s",
    Kind.SPEND: "q",
    Kind.TOKEN_QUOTA: "q",
}


def _unavailable(exc: RedisError) -> ForgeError:
    # Refusing (not admitting unchecked) while Redis is away: budgets must not be overspent by an outage.
    return ForgeError(
        f"the shared rate limiter (Redis) is unavailable: {exc}",
        ErrorCode.UNAVAILABLE,
        "RATE_LIMITER_UNAVAILABLE",
        retry_after_s=1.0,
    )


class RedisLimiter:
    def __init__(self, redis: Redis, prefix: str, period: BudgetPeriod, stream_lease_ms: int) -> None:
        self._redis = redis
        self._prefix = f"{prefix}rl:"
        self._period = period
        self._lease = stream_lease_ms
        self._reserve = redis.register_script(RESERVE)
        self._settle = redis.register_script(SETTLE)

    def _key(self, c: Check) -> str:
        return f"{self._prefix}{c.kind.value}:{c.subject}"

    async def reserve(self, reservation_id: str, checks: Sequence[Check]) -> Verdict:
        now = wall_clock_ms()
        label = self._period.label(now)
        args: list[Any] = [reservation_id, self._lease, label, self._period.end_ms(now)]
        for c in checks:
            args += (_CODE[c.kind], c.limit, c.amount)
        try:
            reply = await self._reserve(keys=[self._key(c) for c in checks], args=args)
        except RedisError as exc:
            raise _unavailable(exc) from exc
        admitted, failed, now = int(reply[0]), int(reply[1]), int(reply[2])
        if not admitted:
            check = checks[failed - 1]
            standing = Standing(check, int(reply[4]), int(reply[5]))
            return Verdict(False, (standing,), now, int(reply[3]), label)
        standings = tuple(Standing(c, int(reply[4 + 2 * i]), int(reply[5 + 2 * i])) for i, c in enumerate(checks))
        return Verdict(True, standings, now, period=label)

    async def settle(
        self, reservation_id: str, checks: Sequence[Check], period: str, used_tokens: int, used_nano: int
    ) -> None:
        keys: list[str] = []
        args: list[Any] = [reservation_id]
        # Only for a counter that lost its expiry: a settle never extends a period's life otherwise.
        expire_at = self._period.end_ms(wall_clock_ms()) + 60_000
        for c in checks:
            if c.kind is Kind.REQUESTS:
                continue
            used = used_nano if c.kind is Kind.SPEND else used_tokens
            delta = 0 if c.kind is Kind.STREAMS else used - c.amount
            if delta == 0 and c.kind is not Kind.STREAMS:
                continue
            key = self._key(c)
            keys.append(f"{key}:{period}" if _CODE[c.kind] == "q" else key)
            args += (_CODE[c.kind], c.limit, delta, expire_at)
        if not keys:
            return
        try:
            await self._settle(keys=keys, args=args)
        except RedisError:
            # The call is over; its stream slot frees itself when its lease ends.
            log.exception("settling reservation %s failed", reservation_id)
