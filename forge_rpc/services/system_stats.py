"""GetSystemStats (AnalyticsService): the host, this process, and the storage forge runs on (seeds 002, 004)."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any, Protocol

from forge.analytics.v1 import analytics_pb2 as pb
from forge.analytics.v1 import system_pb2
from psycopg_pool import AsyncConnectionPool

from ..adapters.host_stats import HostProbe, HostSample
from .context import CallContext
from .timestamps import timestamp

__all__ = ["ServiceState", "ServiceStates", "SystemStatsServicer", "system_resources"]


class ServiceState(Protocol):
    @property
    def enabled(self) -> bool: ...

    @property
    def healthy(self) -> bool: ...


class ServiceStates(Protocol):
    """The health monitor's cached probe results."""

    async def states(self, fresh: bool = False) -> Mapping[str, ServiceState]: ...


def system_resources(h: HostSample) -> system_pb2.SystemResources:
    return system_pb2.SystemResources(
        cpu_percent=h.cpu_percent,
        memory_percent=h.memory_percent,
        memory_used_mb=h.memory_used_mb,
        memory_total_mb=h.memory_total_mb,
        disk_usage_percent=h.disk_usage_percent,
    )


class SystemStatsServicer:
    def __init__(self, host: HostProbe, version: str, started_at: float, redis_enabled: bool) -> None:
        self._host = host
        self._version = version
        self._started_at = started_at
        self._redis = redis_enabled
        self._pool: AsyncConnectionPool[Any] | None = None

    def bind(self, pool: AsyncConnectionPool[Any]) -> None:
        self._pool = pool

    async def _database(self) -> tuple[str, float]:
        if self._pool is None:
            return "", 0.0
        async with self._pool.connection() as conn:
            cur = await conn.execute("SELECT version(), pg_database_size(current_database())")
            row = await cur.fetchone()
        if row is None:
            return "", 0.0
        return str(row[0]).split(" on ", 1)[0], int(row[1]) / (1024 * 1024)

    async def GetSystemStats(self, request: pb.GetSystemStatsRequest, context: CallContext) -> pb.SystemStats:
        host, proc = self._host.host(), self._host.process()
        database, size_mb = await self._database()
        return pb.SystemStats(
            timestamp=timestamp(time.time()),
            system=system_resources(host),
            process=pb.ProcessStats(
                pid=proc.pid,
                uptime_sec=time.time() - self._started_at,
                rss_mb=proc.rss_mb,
                cpu_percent=proc.cpu_percent,
                threads=proc.threads,
                open_fds=proc.open_fds,
            ),
            version=self._version,
            python_version=self._host.python_version,
            platform=self._host.platform,
            hostname=self._host.hostname,
            cpu_count=host.cpu_count,
            load_average=list(host.load_average),
            database=database,
            database_size_mb=size_mb,
            redis_enabled=self._redis,
        )
