"""The system-health part of RoutingService: GetHealth (`/health` and the seeds' spellings) and
WatchServiceStatus (the stream behind `/ws` topic `service_status`). Routing proper arrives with issue #5."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

from forge.routing.v1 import routing_pb2

from ..adapters.providers.health_monitor import HealthMonitor, ServiceState
from .context import CallContext
from .timestamps import now

__all__ = ["SystemHealthServicer"]


def _data(s: ServiceState) -> routing_pb2.ServiceStatusData:
    return routing_pb2.ServiceStatusData(
        healthy=s.healthy, enabled=s.enabled, status=s.status, latency_ms=s.latency_ms, error=s.error
    )


class SystemHealthServicer:
    def __init__(self, monitor: HealthMonitor, version: str, started_at: float, watch_interval_s: float = 5.0) -> None:
        self._monitor = monitor
        self._version = version
        self._started = started_at
        self._interval = watch_interval_s

    async def GetHealth(self, request: routing_pb2.GetHealthRequest, context: CallContext) -> routing_pb2.Health:
        states = await self._monitor.states()
        enabled = [s for s in states.values() if s.enabled]
        down = sorted(s.name for s in enabled if not s.healthy)
        providers = [s for s in enabled if s.name not in ("database", "redis")]
        if not providers:
            status, message = "degraded", "no model provider configured or discovered; see README (providers)"
        elif down:
            status, message = "degraded", f"unavailable: {', '.join(down)}"
        else:
            status, message = "healthy", "All systems operational"
        ollama = states.get("ollama")
        ollama_up = bool(ollama and ollama.enabled and ollama.healthy)
        return routing_pb2.Health(
            status=status,
            version=self._version,
            uptime_sec=round(time.time() - self._started, 3),
            timestamp=now(),
            ollama_available=ollama_up,
            ollama_running=ollama_up,
            database_connected=bool(states.get("database") and states["database"].healthy),
            message=message,
            services={name: s.status for name, s in states.items()},
        )

    async def WatchServiceStatus(
        self, request: routing_pb2.WatchServiceStatusRequest, context: CallContext
    ) -> AsyncIterator[routing_pb2.ServiceStatusEvent]:
        wanted = set(request.services)
        seq = 0
        last: dict[str, ServiceState] = {}
        first = True
        while True:
            states = await self._monitor.states(fresh=not first)
            for name, state in states.items():
                if wanted and name not in wanted:
                    continue
                changed = last.get(name) is None or (last[name].healthy, last[name].enabled) != (
                    state.healthy,
                    state.enabled,
                )
                if changed and not (first and request.changes_only):
                    yield routing_pb2.ServiceStatusEvent(
                        sequence=seq, service=name, data=_data(state), timestamp=now(), initial=first
                    )
                    seq += 1
                last[name] = state
            first = False
            await asyncio.sleep(self._interval)
