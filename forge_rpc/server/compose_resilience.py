"""Circuit breakers (issue #5): the breaker servicer of RoutingService, and the move of the engine's breakers
to Redis when it is configured, so every replica skips the same failing deployments."""

from __future__ import annotations

from ..adapters.coordination.breaker_redis import RedisBreakerStore
from ..services.breakers import BreakerBoardView, BreakerServicer
from .component import Component, Core, Resources

__all__ = ["breaker_board", "resilience_component"]


def breaker_board(core: Core) -> BreakerBoardView:
    """The breakers as the routing component's health views and route planner read them."""
    return BreakerBoardView(core.directory, core.engine.breakers)


def resilience_component(core: Core) -> Component:
    breakers = core.engine.breakers

    async def start(resources: Resources) -> None:
        if resources.redis is not None:
            breakers.use_store(RedisBreakerStore(resources.redis))

    return Component(
        "resilience",
        servicers={"forge.routing.v1.RoutingService": [BreakerServicer(core.directory, breakers)]},
        start=start,
    )
