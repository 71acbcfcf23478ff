"""GetDetailedHealth (seed 004's /api/v1/health/detailed): every dependency with latency and circuit-breaker
state, the last minute's request figures (from the usage ledger), host resources, alerts and what to do."""

from __future__ import annotations

import time
from typing import Any

from forge.routing.v1 import routing_pb2
from psycopg_pool import AsyncConnectionPool

from ..adapters.host_stats import HostProbe
from ..adapters.providers.directory import ProviderDirectory
from ..adapters.providers.health_monitor import HealthMonitor, ServiceState
from ..adapters.providers.service_view import default_model_of
from ..adapters.store.routing_store import RoutingStore, TrafficStats
from ..domain import ForgeError
from .breaker_hook import BreakerBoard, worst_state
from .context import CallContext
from .provider_views import service_status
from .system_stats import system_resources
from .timestamps import now, timestamp

__all__ = ["DetailedHealthServicer"]

WINDOW_S = 60.0
_NONE = TrafficStats(0, 0, 0.0, 0.0)


class DetailedHealthServicer:
    def __init__(
        self,
        directory: ProviderDirectory,
        monitor: HealthMonitor,
        store: RoutingStore,
        host: HostProbe,
        version: str,
        started_at: float,
        breakers: BreakerBoard | None = None,
    ) -> None:
        self._directory = directory
        self._monitor = monitor
        self._store = store
        self._host = host
        self._version = version
        self._started = started_at
        self._pool: AsyncConnectionPool[Any] | None = None
        self.breakers = breakers

    def bind(self, pool: AsyncConnectionPool[Any]) -> None:
        self._pool = pool

    def _dependency(self, state: ServiceState, breaker: str = "closed") -> routing_pb2.DependencyHealth:
        return routing_pb2.DependencyHealth(
            status=service_status(state, breaker),
            latency_ms=state.latency_ms,
            circuit_breaker=breaker,
            error=state.error,
            last_checked=timestamp(state.checked_at) if state.checked_at else None,
        )

    async def GetDetailedHealth(
        self, request: routing_pb2.GetDetailedHealthRequest, context: CallContext
    ) -> routing_pb2.DetailedHealth:
        states = await self._monitor.states()
        deps: dict[str, routing_pb2.DependencyHealth] = {}
        alerts: list[str] = []
        advice: list[str] = []
        db = states.get("database")
        if db is not None:
            deps["postgresql"] = self._dependency(db)
            if self._pool is not None:
                deps["postgresql"].connections = self._pool.get_stats().get("pool_size", 0)
            if db.enabled and not db.healthy:
                alerts.append(f"PostgreSQL is unreachable: {db.error}")
        if "redis" in states:
            deps["redis"] = self._dependency(states["redis"])
        views = self._directory.services()
        for view in views:
            state = states.get(view.name)
            if state is None:
                continue
            breaker = worst_state(self.breakers, view.provider_id)
            dep = self._dependency(state, breaker)
            dep.model = default_model_of(self._directory.current(), view.provider_id)
            deps[view.name] = dep
            if state.enabled and not state.healthy:
                alerts.append(f"service {view.name} is unhealthy: {state.error}")
                if view.accepts_key and not view.key_configured and view.env_var:
                    advice.append(f"set {view.env_var} (or UpdateProviderKey) for service {view.name}")
                elif view.base_url:
                    advice.append(f"check that {view.base_url} answers (service {view.name})")
            if breaker != "closed":
                alerts.append(f"circuit breaker {breaker} for service {view.name}")
        if not any(v.adapter != "local" for v in views) and not (states.get("ollama") or _OFF).enabled:
            advice.append("configure a provider: a model_list entry, OPENAI_API_KEY or a running Ollama")
        try:
            traffic = await self._store.recent_traffic(WINDOW_S)
        except ForgeError as exc:
            traffic = _NONE
            alerts.append(f"request figures unavailable: {exc.message}")
        unhealthy = [d for d in deps.values() if d.status == "unhealthy"]
        if db is not None and not db.healthy:
            overall = "unhealthy"
        else:
            overall = "degraded" if unhealthy or any(d.status == "degraded" for d in deps.values()) else "healthy"
        return routing_pb2.DetailedHealth(
            overall_status=overall,
            timestamp=now(),
            services=deps,
            performance_metrics=routing_pb2.PerformanceMetrics(
                requests_per_second=round(traffic.requests / WINDOW_S, 3),
                avg_response_time_ms=round(traffic.avg_latency_ms, 2),
                p95_response_time_ms=round(traffic.p95_latency_ms, 2),
                error_rate=round(traffic.failed / traffic.requests, 4) if traffic.requests else 0.0,
            ),
            system_resources=system_resources(self._host.host()),
            alerts=alerts,
            recommendations=advice,
            version=self._version,
            uptime_sec=round(time.time() - self._started, 3),
        )


_OFF = ServiceState("", enabled=False, healthy=False)
