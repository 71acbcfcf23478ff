"""HealthMonitor: probes each provider (cheaply: Ollama's /api/version, an OpenAI-compatible /models) and keeps
the last result, so /health answers from memory and status watchers see changes."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

from psycopg_pool import AsyncConnectionPool

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
        self._pool: AsyncConnectionPool[Any] | None = None
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

    def attach_database(self, pool: AsyncConnectionPool[Any] | None) -> None:
        """The pool to probe as "database" (None until storage has started)."""
        self._pool = pool
        self._at = 0.0

    async def _probe_all(self) -> dict[str, ServiceState]:
        providers = self._directory.providers
        results = await asyncio.gather(*(self._probe(pid) for pid in providers), self._probe_database())
        states = {s.name: s for s in results}
        # Rate limits, cache and pub/sub stay in process until FORGE_REDIS_URL (issue 5).
        states.setdefault("redis", ServiceState("redis", enabled=False, healthy=True))
        return states

    async def _probe_database(self) -> ServiceState:
        if self._pool is None:
            return ServiceState("database", enabled=False, healthy=False, error="not started")
        started = time.perf_counter()
        try:
            async with asyncio.timeout(PROBE_TIMEOUT_S), self._pool.connection() as conn:
                await conn.execute("SELECT 1")
        except Exception as exc:  # any failure means unhealthy; the message says which
            return ServiceState("database", True, False, PROBE_TIMEOUT_S * 1000, str(exc)[:200])
        return ServiceState("database", True, True, round((time.perf_counter() - started) * 1000, 2))

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
        if not ok and isinstance(provider, OllamaProvider) and pid not in self._directory.configured_provider_ids():
            # Discovered, not configured: an Ollama that is not running is optional, not a failure.
            return ServiceState(name, False, False, round(latency, 2), "not running (used when it answers)")
        return ServiceState(name, True, ok, round(latency, 2), "" if ok else "not reachable")
