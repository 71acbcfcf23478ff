"""What a feature plugs into the composition root: its servicers, its pipeline policies, and its lifecycle.

Each feature (model repository, auth, limits and cache, routing, resilience…) has one `compose_*.py` that builds
a `Component` from the shared `Core`; `app.build()` only collects them. A feature therefore never edits the
composition root, and its wiring lives next to nothing else.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from psycopg_pool import AsyncConnectionPool

from .policy import Policy

if TYPE_CHECKING:
    from redis.asyncio import Redis

    from ..adapters.accounting import PriceTable
    from ..adapters.providers.directory import ProviderDirectory
    from ..adapters.providers.health_monitor import HealthMonitor
    from ..adapters.store.ledger import UsageLedger
    from ..domain import ChatEngine
    from .config import ForgeConfig

__all__ = ["Component", "Core", "Resources"]


@dataclass(frozen=True, slots=True)
class Resources:
    """Shared connections, open once storage is up."""

    pool: AsyncConnectionPool[Any]
    redis: Redis | None
    """None unless `FORGE_REDIS_URL` is set: then state replicas must share lives there."""


@dataclass(slots=True)
class Core:
    """The objects every feature may use, built before any component."""

    config: ForgeConfig
    directory: ProviderDirectory
    engine: ChatEngine
    prices: PriceTable
    ledger: UsageLedger
    monitor: HealthMonitor
    started_at: float


@dataclass(slots=True)
class Component:
    name: str
    servicers: Mapping[str, Sequence[object]] = field(default_factory=dict)
    """Service full name → servicers implementing some of its RPCs."""
    policies: Sequence[Policy] = ()
    """Pipeline policies, in the order they run (components are asked in build order)."""
    start: Callable[[Resources], Awaitable[None]] | None = None
    """Called once storage (and Redis) is up, before anything serves."""
    stop: Callable[[], Awaitable[None]] | None = None
    """Called after the servers stopped, before storage closes."""
