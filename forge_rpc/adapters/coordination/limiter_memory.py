"""The in-process limiter: exact within one replica, because a reservation is checked and applied without an
`await` in between — no other call on the event loop can interleave.

Why not `aiolimiter`: it waits for capacity instead of refusing, cannot give tokens back when a call used fewer
than it reserved, cannot check several counters as one all-or-nothing step, and does not report remaining/reset
for the headers. The arithmetic here is `domain.limits`', the same the Redis script implements, so one replica
and many behave alike.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from ...domain.limits import (
    WINDOW_MS,
    BudgetPeriod,
    Check,
    Kind,
    Standing,
    Verdict,
    bucket_admit,
    bucket_remaining,
    bucket_reset_ms,
    bucket_retry_ms,
    drained,
)

__all__ = ["MemoryLimiter", "wall_clock_ms"]

_SWEEP_EVERY = 4096
_STREAM_RETRY_MS = 1000  # nobody knows when a stream ends: ask again in a second


def wall_clock_ms() -> int:
    # Wall time, not monotonic: budget periods align to the epoch, as they do in Redis (its TIME).
    return time.time_ns() // 1_000_000


class MemoryLimiter:
    def __init__(self, period: BudgetPeriod, clock: Callable[[], int] = wall_clock_ms) -> None:
        self._period = period
        self._clock = clock
        self._buckets: dict[tuple[str, Kind], list[int]] = {}  # [level, last_ms, limit]
        self._streams: dict[str, set[str]] = {}
        self._quotas: dict[tuple[str, Kind], tuple[str, int, int]] = {}  # (period, used, period end ms)
        self._since_sweep = 0

    async def reserve(self, reservation_id: str, checks: Sequence[Check]) -> Verdict:
        now = self._clock()
        label, end = "", 0
        if any(c.kind is Kind.SPEND or c.kind is Kind.TOKEN_QUOTA for c in checks):
            label, end = self._period.label(now), self._period.end_ms(now)
        levels: list[int] = []
        for c in checks:
            if c.kind is Kind.REQUESTS or c.kind is Kind.TOKENS:
                state = self._buckets.get((c.subject, c.kind))
                level = drained(state[0], state[1], now, c.limit) if state is not None else 0
                after = bucket_admit(level, c.amount, c.limit)
                if after is None:
                    standing = Standing(c, bucket_remaining(level, c.limit), bucket_reset_ms(level, c.limit))
                    return Verdict(False, (standing,), now, bucket_retry_ms(level, c.amount, c.limit), label)
                levels.append(after)
            elif c.kind is Kind.STREAMS:
                held = len(self._streams.get(c.subject, ()))
                if held + 1 > c.limit:
                    return Verdict(False, (Standing(c, 0, 0),), now, _STREAM_RETRY_MS, label)
                levels.append(held + 1)
            else:
                quota = self._quotas.get((c.subject, c.kind))
                used = quota[1] if quota is not None and quota[0] == label else 0
                if used + c.amount > c.limit:
                    retry = -1 if c.amount > c.limit else end - now
                    return Verdict(False, (Standing(c, max(0, c.limit - used), end - now),), now, retry, label)
                levels.append(used + c.amount)
        standings = []
        for c, level in zip(checks, levels, strict=True):
            if c.kind is Kind.REQUESTS or c.kind is Kind.TOKENS:
                self._buckets[(c.subject, c.kind)] = [level, now, c.limit]
                standings.append(Standing(c, bucket_remaining(level, c.limit), bucket_reset_ms(level, c.limit)))
            elif c.kind is Kind.STREAMS:
                self._streams.setdefault(c.subject, set()).add(reservation_id)
                standings.append(Standing(c, c.limit - level, 0))
            else:
                self._quotas[(c.subject, c.kind)] = (label, level, end)
                standings.append(Standing(c, c.limit - level, end - now))
        self._since_sweep += 1
        if self._since_sweep >= _SWEEP_EVERY:
            self._sweep(now)
        return Verdict(True, tuple(standings), now, period=label)

    async def settle(
        self, reservation_id: str, checks: Sequence[Check], period: str, used_tokens: int, used_nano: int
    ) -> None:
        now = self._clock()
        for c in checks:
            if c.kind is Kind.TOKENS:
                delta = used_tokens - c.amount
                if delta:
                    state = self._buckets.setdefault((c.subject, c.kind), [0, now, c.limit])
                    level = drained(state[0], state[1], now, c.limit)
                    state[0], state[1] = max(0, level + delta * WINDOW_MS), now
            elif c.kind is Kind.STREAMS:
                held = self._streams.get(c.subject)
                if held is not None:
                    held.discard(reservation_id)
                    if not held:
                        del self._streams[c.subject]
            elif c.kind is Kind.SPEND or c.kind is Kind.TOKEN_QUOTA:
                delta = (used_nano if c.kind is Kind.SPEND else used_tokens) - c.amount
                quota = self._quotas.get((c.subject, c.kind))
                # A reservation from a period that has ended changes nothing: that period's count is gone.
                if delta and quota is not None and quota[0] == period:
                    self._quotas[(c.subject, c.kind)] = (period, max(0, quota[1] + delta), quota[2])

    def _sweep(self, now: int) -> None:
        """Forgets counters back at rest, so one-off client addresses do not accumulate."""
        self._since_sweep = 0
        for key, (level, last, limit) in list(self._buckets.items()):
            if drained(level, last, now, limit) == 0:
                del self._buckets[key]
        for key, (_, _, end) in list(self._quotas.items()):
            if end <= now:
                del self._quotas[key]
