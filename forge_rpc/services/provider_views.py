"""The registry views of RoutingService: ListProviders (seed 000's /v1/providers), CheckProviderHealth
(/providers/health, with latency), ListServices and GetService (seed 003's /api/services/). Health is live:
the active probes overlaid with what real traffic reported (HealthMonitor)."""

from __future__ import annotations

import time

from forge.routing.v1 import routing_pb2

from ..adapters.providers.directory import ProviderDirectory, ServiceView
from ..adapters.providers.health_monitor import HealthMonitor, ServiceState
from ..adapters.providers.service_view import default_model_of, models_of
from ..domain import FieldViolation, InvalidArgument, NotFound
from .breaker_hook import BreakerBoard, worst_state
from .context import CallContext
from .paging import next_page_token, page_offset, page_size
from .timestamps import timestamp

__all__ = ["KNOWN_PROVIDERS", "ProviderViewsServicer", "service_status"]

KNOWN_PROVIDERS = ("openai", "anthropic", "gemini", "deepseek", "openrouter", "groq", "mistral", "ollama")
"""Listed by ListProviders even when not configured, so `configured: false` says what could be."""

_NOT_PROBED = ServiceState("", enabled=True, healthy=True, error="not probed yet")


def service_status(state: ServiceState, breaker: str) -> str:
    if not state.enabled:
        return "disabled"
    if not state.healthy:
        return "unhealthy"
    return "degraded" if breaker != "closed" else "healthy"


class ProviderViewsServicer:
    def __init__(self, directory: ProviderDirectory, monitor: HealthMonitor, breakers: BreakerBoard | None = None):
        self._directory = directory
        self._monitor = monitor
        self.breakers = breakers

    def _service(self, view: ServiceView, state: ServiceState) -> routing_pb2.Service:
        pid = view.provider_id
        breaker = worst_state(self.breakers, pid)
        return routing_pb2.Service(
            name=view.name,
            provider=view.kind,
            enabled=state.enabled,
            healthy=state.healthy,
            status=service_status(state, breaker),
            info=routing_pb2.ServiceInfo(
                type=view.adapter,
                base_url=view.base_url,
                model=default_model_of(self._directory.current(), pid),
                models=models_of(self._directory.current(), pid),
            ),
            latency_ms=state.latency_ms,
            last_checked=timestamp(state.checked_at) if state.checked_at else None,
            error=state.error,
            circuit_breaker=breaker,
            key_configured=view.key_configured,
        )

    async def ListServices(
        self, request: routing_pb2.ListServicesRequest, context: CallContext
    ) -> routing_pb2.ListServicesResponse:
        size = page_size(request.page_size)
        offset = page_offset(request.page_token)
        states = await self._monitor.states()
        services = [self._service(v, states.get(v.name, _NOT_PROBED)) for v in self._directory.services()]
        services.sort(key=lambda s: s.name)
        page = services[offset : offset + size]
        return routing_pb2.ListServicesResponse(
            total=len(services),
            healthy=sum(s.healthy and s.enabled for s in services),
            enabled=sum(s.enabled for s in services),
            services={s.name: s for s in page},
            next_page_token=next_page_token(offset, len(page), len(services)),
        )

    async def GetService(self, request: routing_pb2.GetServiceRequest, context: CallContext) -> routing_pb2.Service:
        name = request.service_name.strip().strip("/")
        if not name:
            raise InvalidArgument([FieldViolation("service_name", "required")])
        view = self._directory.service(name)
        if view is None:
            raise NotFound("service", name)
        states = await self._monitor.states()
        return self._service(view, states.get(name, _NOT_PROBED))

    def _provider_status(self, view: ServiceView, state: ServiceState) -> routing_pb2.ProviderStatus:
        # An Ollama found running at OLLAMA_HOST, and the in-process model, are there without any setting.
        found = view.adapter == "local" or (view.adapter == "ollama" and state.enabled and state.healthy)
        return routing_pb2.ProviderStatus(
            name=view.name,
            configured=view.configured or view.key_configured or found,
            models=models_of(self._directory.current(), view.provider_id),
            ok=state.enabled and state.healthy,
            latency_ms=state.latency_ms,
            url=view.base_url,
            error=state.error,
            services=[view.name],
        )

    async def CheckProviderHealth(
        self, request: routing_pb2.CheckProviderHealthRequest, context: CallContext
    ) -> routing_pb2.CheckProviderHealthResponse:
        views = {v.name: v for v in self._directory.services()}
        wanted = [s.strip() for s in request.services if s.strip()]
        unknown = [s for s in wanted if s not in views]
        if unknown:
            raise InvalidArgument(
                [FieldViolation("services", f"unknown service(s) {', '.join(unknown)}; known: {', '.join(views)}")]
            )
        started = time.perf_counter()
        states = await self._monitor.states(fresh=True)
        took = (time.perf_counter() - started) * 1000
        checked = {n: self._provider_status(v, states.get(n, _NOT_PROBED)) for n, v in views.items()}
        if wanted:
            checked = {n: checked[n] for n in wanted}
        # An optional service that is off (Ollama found by discovery, not running) does not degrade the rest.
        down = [n for n, p in checked.items() if not p.ok and states.get(n, _NOT_PROBED).enabled]
        return routing_pb2.CheckProviderHealthResponse(
            status="degraded" if down else "ok", took_ms=round(took, 2), providers=checked
        )

    async def ListProviders(
        self, request: routing_pb2.ListProvidersRequest, context: CallContext
    ) -> routing_pb2.ListProvidersResponse:
        size = page_size(request.page_size)
        offset = page_offset(request.page_token)
        states = await self._monitor.states()
        by_kind: dict[str, routing_pb2.ProviderStatus] = {
            k: routing_pb2.ProviderStatus(name=k, configured=False) for k in KNOWN_PROVIDERS
        }
        seen: set[str] = set()
        for view in self._directory.services():
            one = self._provider_status(view, states.get(view.name, _NOT_PROBED))
            p = by_kind.setdefault(view.kind, routing_pb2.ProviderStatus(name=view.kind))
            first = view.kind not in seen
            seen.add(view.kind)
            p.configured = p.configured or one.configured
            p.models.extend(m for m in one.models if m not in p.models)
            p.services.append(view.name)
            # A provider is up when any of its services is; its latency and address are its best service's.
            if first or (one.ok and (not p.ok or one.latency_ms < p.latency_ms)):
                p.ok, p.latency_ms, p.url, p.error = one.ok, one.latency_ms, one.url, one.error
        names = sorted(by_kind)
        page = names[offset : offset + size]
        return routing_pb2.ListProvidersResponse(
            providers={n: by_kind[n] for n in page},
            total_configured=sum(p.configured for p in by_kind.values()),
            total_available=sum(p.configured and p.ok for p in by_kind.values()),
            next_page_token=next_page_token(offset, len(page), len(names)),
        )
