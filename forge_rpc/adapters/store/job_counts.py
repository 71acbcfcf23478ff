"""How many rows of the durable queue are in each state, per lane: the live metrics snapshot's task and job counts.

One GROUP BY over `jobs`, kept for `max_age_s` (about a second). Why a cache: WatchMetrics streams a snapshot per
subscriber up to four times a second, and every dashboard open would otherwise be a table scan at that rate.
Why one query in flight: when the cached figures expire under many subscribers, they all wait for the same
refresh rather than each starting its own.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from typing import Final

from ...domain.jobs import JobState, Lane
from .bound import BoundStore, Pool

__all__ = ["JobCounts", "LaneCounts"]

LaneCounts = Mapping[Lane, Mapping[JobState, int]]
"""Rows per state in each lane; a state with no rows is absent."""

_COUNT: Final = "SELECT queue, state, count(*) FROM jobs GROUP BY queue, state"


class JobCounts(BoundStore):
    what = "the job queue"

    def __init__(
        self, pool: Pool | None = None, *, max_age_s: float = 1.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        super().__init__(pool)
        self._max_age_s = max_age_s
        self._clock = clock
        self._cached: LaneCounts | None = None
        self._taken_at = 0.0
        self._refresh: asyncio.Task[LaneCounts] | None = None

    async def counts(self) -> LaneCounts:
        """The counts, at most `max_age_s` old."""
        if self._cached is not None and self._clock() - self._taken_at < self._max_age_s:
            return self._cached
        if self._refresh is None:
            self._refresh = asyncio.create_task(self._query())
            # Retrieved here too: if every waiter was cancelled, a failed query must not be reported as unseen.
            self._refresh.add_done_callback(lambda t: None if t.cancelled() else t.exception())
        # Shielded: a subscriber that leaves mid-query must not cancel the refresh the others wait for.
        return await asyncio.shield(self._refresh)

    async def _query(self) -> LaneCounts:
        started = self._clock()
        try:
            async with self._pool.connection() as conn:
                rows = await (await conn.execute(_COUNT)).fetchall()
            counts: dict[Lane, dict[JobState, int]] = {lane: {} for lane in Lane}
            for lane, state, n in rows:
                counts[Lane(lane)][JobState(state)] = int(n)
            # Aged from when the query began: the figures are no newer than that.
            self._cached, self._taken_at = counts, started
            return counts
        finally:
            self._refresh = None
