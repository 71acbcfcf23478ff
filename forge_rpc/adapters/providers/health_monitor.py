"""HealthMonitor: probes each provider (cheaply: Ollama's /api/version, an OpenAI-compatible /models) and keeps
the last result, so /health answers from memory and status watchers see changes."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from .directory import ProviderDirectory
from .ollama_native import OllamaProvider
from .openai_compat import OpenAICompatProvider

__all__ = ["HealthMonitor", "ServiceState"]

PROBE_TIMEOUT_S = 2.0


@dataclass(frozen=True, slots=True)
class ServiceState:
    name: str
    enabled: bool
    healthy: bool
    latency_ms: float = 0.0
    error: str = ""

    @property
    def status(self) -> str:
        if not self.enabled:
            return "disabled"
        return "healthy" if self.healthy else "unhealthy"


class HealthMonitor:
    def __init__(self, directory: ProviderDirectory, max_age_s: float = 10.0) -> None:
        self._directory = directory
        self._max_age = max_age_s
        self._states: dict[str, ServiceState] = {}
        self._at = 0.0
        self._lock = asyncio.Lock()

    async def states(self, fresh: bool = False) -> dict[str, ServiceState]:
        """The last probe results, probing again when they are older than `max_age_s` (or `fresh`)."""
        if fresh or time.monotonic() - self._at > self._max_age:
            async with self._lock:
                if fresh or time.monotonic() - self._at > self._max_age:
                    self._states = await self._probe_all()
                    self._at = time.monotonic()
        return self._states

    async def _probe_all(self) -> dict[str, ServiceState]:
        providers = self._directory.providers
        results = await asyncio.gather(*(self._probe(pid) for pid in providers))
        states = {s.name: s for s in results}
        # Embedded defaults: state is in process until a database / Redis is configured.
        for name in ("database", "redis"):
            states.setdefault(name, ServiceState(name, enabled=False, healthy=True))
        return states

    async def _probe(self, pid: str) -> ServiceState:
        provider = self._directory.providers[pid]
        name = provider.kind if list(self._directory.provider_kinds().values()).count(provider.kind) == 1 else pid
        started = time.perf_counter()
        try:
            async with asyncio.timeout(PROBE_TIMEOUT_S):
                if isinstance(provider, OllamaProvider):
                    ok = await provider.available(PROBE_TIMEOUT_S)
                elif isinstance(provider, OpenAICompatProvider):
                    ok = await provider.reachable()
                else:
                    ok = True  # litellm providers: no free probe endpoint; passive health comes from traffic
        except TimeoutError:
            return ServiceState(name, True, False, PROBE_TIMEOUT_S * 1000, "probe timed out")
        latency = (time.perf_counter() - started) * 1000
        return ServiceState(name, True, ok, round(latency, 2), "" if ok else "not reachable")
