"""The live metrics snapshot (GetMetrics, WatchMetrics, /ws `metrics`): traffic over the last minute, calls in
flight, provider health, host resources, and the durable queue's tasks and jobs by state.

Every part is cheap to take at WatchMetrics' rate: the health monitor's probe and the queue counts are cached by
their sources; traffic is one indexed window over the ledger.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping

from forge.analytics.v1 import analytics_pb2 as pb

from ..adapters.host_stats import HostProbe
from ..adapters.store.analytics_queries import AnalyticsQueries
from ..adapters.store.job_counts import JobCounts, LaneCounts
from ..domain.jobs import LIVE, JobState, Lane
from .inflight import InFlight
from .system_stats import ServiceStates, system_resources
from .timestamps import timestamp

__all__ = ["MetricsSnapshots", "queue_counts"]


def queue_counts(by_state: Mapping[JobState, int]) -> pb.QueueCounts:
    """One lane's rows by state. `running` is every state a worker holds (preparing, training, evaluating,
    running, and cancelling until the worker lets go); a paused row waits on its owner, not on a worker, so it
    counts in `total` only."""
    return pb.QueueCounts(
        total=sum(by_state.values()),
        queued=by_state.get(JobState.QUEUED, 0),
        running=sum(by_state.get(s, 0) for s in LIVE),
        completed=by_state.get(JobState.COMPLETED, 0),
        failed=by_state.get(JobState.FAILED, 0),
        cancelled=by_state.get(JobState.CANCELLED, 0),
    )


class MetricsSnapshots:
    def __init__(
        self,
        queries: AnalyticsQueries,
        started_at: float,
        inflight: InFlight,
        host: HostProbe,
        services: ServiceStates | None = None,
        queue: JobCounts | None = None,
    ) -> None:
        self._queries = queries
        self._started_at = started_at
        self._inflight = inflight
        self._host = host
        self._services = services
        self._queue = queue

    async def _lanes(self) -> LaneCounts | None:
        return None if self._queue is None else await self._queue.counts()

    async def snapshot(self) -> pb.MetricsSnapshot:
        t, lanes = await asyncio.gather(self._queries.traffic(60.0), self._lanes())
        now = time.time()
        snapshot = pb.MetricsSnapshot(
            timestamp=timestamp(now),
            uptime_sec=now - self._started_at,
            traffic=pb.TrafficStats(
                requests_per_minute=t.requests * 60 / t.window_s,
                tokens_per_second=t.completion_tokens / t.window_s,
                avg_latency_ms=t.avg_latency_ms,
                p95_latency_ms=t.p95_latency_ms,
                error_rate=t.error_rate,
                active_requests=self._inflight.requests,
                active_streams=self._inflight.streams,
            ),
            system=system_resources(self._host.host()),
        )
        if lanes is not None:
            snapshot.tasks.CopyFrom(queue_counts(lanes.get(Lane.TASKS, {})))
            snapshot.jobs.CopyFrom(queue_counts(lanes.get(Lane.TRAINING, {})))
        if self._services is not None:
            # The monitor's cached probe (re-probed at most every few seconds), never a probe per snapshot.
            states = [st for st in (await self._services.states()).values() if st.enabled]
            healthy = sum(1 for st in states if st.healthy)
            snapshot.services.CopyFrom(
                pb.ServiceCounts(total=len(states), healthy=healthy, unhealthy=len(states) - healthy)
            )
        return snapshot
