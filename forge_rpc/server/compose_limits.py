"""Rate limits, budgets and the response cache (issue #5): the limits policy, the cache RPCs of
AnalyticsService, and at start the backends — Redis when configured (shared by every replica), else in process.

The chat servicer reads the same `ResponseCache`: build it with `response_cache(config)` and hand it to both
`ChatServicer(..., cache=...)` and `limits_component(core, cache)`.
"""

from __future__ import annotations

import dataclasses

from ..adapters.coordination.cache_memory import MemoryCache
from ..adapters.coordination.cache_redis import RedisCache
from ..adapters.coordination.limiter_memory import MemoryLimiter
from ..adapters.coordination.limiter_redis import RedisLimiter
from ..domain.limits import Rates
from ..domain.response_cache import ResponseCache
from ..services.cache import CacheServicer
from .component import Component, Core, Resources
from .config import ForgeConfig
from .limits_policy import LimitsPolicy, Resolve

__all__ = ["limits_component", "response_cache"]


def response_cache(config: ForgeConfig) -> ResponseCache:
    c = config.limits.cache
    return ResponseCache(c.enabled, c.ttl_s)


def _resolver(core: Core) -> Resolve:
    """The name a model is limited under (the default model's when the request names none) and the upstream
    name it is priced under (an alias or wildcard route resolves to the provider's model)."""

    def resolve(model: str) -> tuple[str, str]:
        catalog = core.directory.current()
        name = model or catalog.default_model or ""
        route = catalog.find(name) if name else None
        return name, route.upstream_model if route is not None else name

    return resolve


def limits_component(core: Core, cache: ResponseCache | None = None) -> Component:
    cfg = core.config.limits
    if not core.config.auth.enabled and not cfg.anonymous_without_auth:
        # Auth off: every caller is the install's own operator, not an anonymous stranger.
        cfg = dataclasses.replace(cfg, anonymous=Rates())
    shared_cache = cache if cache is not None else response_cache(core.config)
    policy = LimitsPolicy(cfg, MemoryLimiter(cfg.budget_period), core.prices, _resolver(core))

    async def start(resources: Resources) -> None:
        if resources.redis is not None:
            policy.limiter = RedisLimiter(resources.redis, cfg.key_prefix, cfg.budget_period, cfg.stream_lease_s * 1000)
            shared_cache.store = RedisCache(resources.redis, cfg.key_prefix)
        else:
            shared_cache.store = MemoryCache(cfg.cache.max_entries)

    return Component(
        "limits",
        servicers={"forge.analytics.v1.AnalyticsService": [CacheServicer(shared_cache, core.engine, core.ledger)]},
        policies=[policy],
        start=start,
    )
