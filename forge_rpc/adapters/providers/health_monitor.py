"""HealthMonitor: live health of every service, from two sources.

Active: each provider is probed cheaply (Ollama's /api/version, an OpenAI-compatible /models) and the last
result kept, so /health answers from memory and status watchers see changes. Passive: the engine reports the
outcome of every upstream call (`record`), so a service whose requests keep failing shows unhealthy even while
its probe endpoint still answers, and recovers with its next successful request.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from dataclasses import dataclass, field, replace
from typing import Any

from psycopg_pool import AsyncConnectionPool

from .directory import ProviderDirectory
from .ollama_native import OllamaProvider
from .openai_compat import OpenAICompatProvider

__all__ = ["HealthMonitor", "PassiveHealth", "ServiceState"]

PROBE_TIMEOUT_S = 2.0
PASSIVE_FAILURES = 3
"""Consecutive failed requests that make a service unhealthy (one success clears them)."""
PASSIVE_WINDOW_S = 60.0
"""Failures older than this no longer count: a service nobody used since is judged by its probe again."""


@dataclass(frozen=True, slots=True)
class ServiceState:
    name: str
    enabled: bool
    healthy: bool
    latency_ms: float = 0.0
    error: str = ""
    provider_id: str = ""
    """Empty for "database" and "redis"."""
    checked_at: float = 0.0
    """When the probe ran (epoch seconds)."""

    @property
    def status(self) -> str:
        if not self.enabled:
            return "disabled"
        return "healthy" if self.healthy else "unhealthy"


@dataclass(slots=True)
class PassiveHealth:
    """What real traffic says about one provider."""

    consecutive_failures: int = 0
    last_failure_at: float = 0.0
    """time.monotonic() of the last failed request."""
    recent: deque[tuple[float, bool, float]] = field(default_factory=lambda: deque(maxlen=256))
    """(monotonic time, ok, latency ms) of the latest requests."""

    def failing(self, now: float) -> bool:
        return self.consecutive_failures >= PASSIVE_FAILURES and now - self.last_failure_at <= PASSIVE_WINDOW_S


class HealthMonitor:
    def __init__(self, directory: ProviderDirectory, max_age_s: float = 10.0) -> None:
        self._directory = directory
        self._pool: AsyncConnectionPool[Any] | None = None
        self._max_age = max_age_s
        self._states: dict[str, ServiceState] = {}
        self._at = 0.0
        self._lock = asyncio.Lock()
        self._passive: dict[str, PassiveHealth] = {}

    def record(self, provider_id: str, ok: bool, latency_ms: float) -> None:
        """One upstream call's outcome (`provider_id` is the route's `deployment.provider_id`). Called on the hot
        path, once per call: a few attribute writes, no I/O. A request the caller cancelled is neither."""
        passive = self._passive.get(provider_id)
        if passive is None:
            passive = self._passive[provider_id] = PassiveHealth()
        now = time.monotonic()
        passive.recent.append((now, ok, latency_ms))
        if ok:
            passive.consecutive_failures = 0
        else:
            passive.consecutive_failures += 1
            passive.last_failure_at = now

    def passive(self, provider_id: str) -> PassiveHealth | None:
        return self._passive.get(provider_id)

    def invalidate(self) -> None:
        """Forget the cached probes (the directory changed): the next read probes again."""
        self._at = 0.0

    async def states(self, fresh: bool = False) -> dict[str, ServiceState]:
        """Every service's health, keyed by service name, plus "database" and "redis": the last probe results
        (probing again when older than `max_age_s`, or `fresh`), overlaid with what recent traffic says."""
        if fresh or time.monotonic() - self._at > self._max_age:
            async with self._lock:
                if fresh or time.monotonic() - self._at > self._max_age:
                    self._states = await self._probe_all()
                    self._at = time.monotonic()
        if not self._passive:
            return self._states
        now = time.monotonic()
        out = dict(self._states)
        for name, state in self._states.items():
            passive = self._passive.get(state.provider_id) if state.provider_id else None
            if passive is not None and state.enabled and passive.failing(now):
                ago = now - passive.last_failure_at
                error = f"{passive.consecutive_failures} requests in a row failed, the last {ago:.0f}s ago"
                out[name] = replace(state, healthy=False, error=f"{state.error}; {error}" if state.error else error)
        return out

    def attach_database(self, pool: AsyncConnectionPool[Any] | None) -> None:
        """The pool to probe as "database" (None until storage has started)."""
        self._pool = pool
        self._at = 0.0

    async def _probe_all(self) -> dict[str, ServiceState]:
        providers = dict(self._directory.providers)
        results = await asyncio.gather(*(self._probe(pid) for pid in providers), self._probe_database())
        states = {s.name: s for s in results}
        # Rate limits, cache and pub/sub stay in process until FORGE_REDIS_URL (issue 5).
        states.setdefault("redis", ServiceState("redis", enabled=False, healthy=True))
        return states

    async def _probe_database(self) -> ServiceState:
        if self._pool is None:
            return ServiceState("database", enabled=False, healthy=False, error="not started")
        started, at = time.perf_counter(), time.time()
        try:
            async with asyncio.timeout(PROBE_TIMEOUT_S), self._pool.connection() as conn:
                await conn.execute("SELECT 1")
        except Exception as exc:  # any failure means unhealthy; the message says which
            return ServiceState("database", True, False, PROBE_TIMEOUT_S * 1000, str(exc)[:200], checked_at=at)
        return ServiceState("database", True, True, round((time.perf_counter() - started) * 1000, 2), checked_at=at)

    async def _probe(self, pid: str) -> ServiceState:
        provider = self._directory.providers[pid]
        name = self._directory.service_name(pid)
        started, at = time.perf_counter(), time.time()
        try:
            async with asyncio.timeout(PROBE_TIMEOUT_S):
                if isinstance(provider, OllamaProvider):
                    ok = await provider.available(PROBE_TIMEOUT_S)
                elif isinstance(provider, OpenAICompatProvider):
                    ok = await provider.reachable()
                else:
                    ok = True  # litellm providers: no free probe endpoint; passive health comes from traffic
        except TimeoutError:
            return ServiceState(name, True, False, PROBE_TIMEOUT_S * 1000, "probe timed out", pid, at)
        latency = round((time.perf_counter() - started) * 1000, 2)
        if not ok and isinstance(provider, OllamaProvider) and pid not in self._directory.configured_provider_ids():
            # Discovered, not configured: an Ollama that is not running is optional, not a failure.
            return ServiceState(name, False, False, latency, "not running (used when it answers)", pid, at)
        return ServiceState(name, True, ok, latency, "" if ok else "not reachable", pid, at)
