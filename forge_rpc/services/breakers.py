"""The circuit-breaker part of RoutingService: ListCircuitBreakers and ResetCircuitBreaker, one breaker per
deployment of the current catalog (configured, discovered and local); and `BreakerBoardView`, the synchronous
snapshot the health views and the route planner read (services/breaker_hook.py)."""

from __future__ import annotations

from dataclasses import dataclass

from forge.routing.v1 import routing_pb2

from ..domain import Deployment, FieldViolation, InvalidArgument, NotFound
from ..domain.breaker import BreakerState, CircuitBreakers, CircuitState
from ..domain.engine import CatalogSource
from .context import CallContext
from .paging import next_page_token, page_offset, page_size
from .timestamps import timestamp

__all__ = ["BreakerBoardView", "BreakerServicer", "BreakerSnapshot"]

STATE: dict[CircuitState, routing_pb2.CircuitState.ValueType] = {
    CircuitState.CLOSED: routing_pb2.CIRCUIT_STATE_CLOSED,
    CircuitState.OPEN: routing_pb2.CIRCUIT_STATE_OPEN,
    CircuitState.HALF_OPEN: routing_pb2.CIRCUIT_STATE_HALF_OPEN,
}


@dataclass(frozen=True, slots=True)
class BreakerSnapshot:
    name: str
    """The deployment id."""
    provider_id: str
    model: str
    status: str
    """"closed", "open" or "half_open"."""
    failures: int


class BreakerBoardView:
    """Every deployment's breaker as this replica last saw it, without I/O (in memory: exact; with Redis: as
    of this replica's last look, at most a request or a listing ago)."""

    def __init__(self, catalog: CatalogSource, breakers: CircuitBreakers) -> None:
        self._catalog = catalog
        self._breakers = breakers

    def snapshot(self) -> list[BreakerSnapshot]:
        now = self._breakers.clock()
        out = []
        for key, d in self._catalog.current().members():
            s = self._breakers.peek(key)
            out.append(BreakerSnapshot(key, d.provider_id, d.model_name, s.effective(now).value, s.failures))
        return out


class BreakerServicer:
    def __init__(self, catalog: CatalogSource, breakers: CircuitBreakers) -> None:
        self._catalog = catalog
        self.breakers = breakers

    async def ListCircuitBreakers(
        self, request: routing_pb2.ListCircuitBreakersRequest, context: CallContext
    ) -> routing_pb2.ListCircuitBreakersResponse:
        size, offset = page_size(request.page_size), page_offset(request.page_token)
        members = self._catalog.current().members()
        states = await self.breakers.states([key for key, _ in members])
        now = self.breakers.clock()
        rows = [
            (key, d, s)
            for (key, d), s in zip(members, states, strict=True)
            if not request.state or STATE[s.effective(now)] == request.state
        ]
        page = rows[offset : offset + size]
        return routing_pb2.ListCircuitBreakersResponse(
            circuit_breakers=[self._message(key, d, s, now) for key, d, s in page],
            next_page_token=next_page_token(offset, len(page), len(rows)),
        )

    async def ResetCircuitBreaker(
        self, request: routing_pb2.ResetCircuitBreakerRequest, context: CallContext
    ) -> routing_pb2.CircuitBreaker:
        if not request.name:
            raise InvalidArgument([FieldViolation("name", "the deployment id is required")])
        deployment = self._catalog.current().by_id(request.name)
        if deployment is None:
            raise NotFound("circuit breaker", request.name)
        state = await self.breakers.reset(request.name)
        return self._message(request.name, deployment, state, self.breakers.clock())

    def _message(self, key: str, d: Deployment, s: BreakerState, now: float) -> routing_pb2.CircuitBreaker:
        policy = self.breakers.policy
        effective = s.effective(now)
        out = routing_pb2.CircuitBreaker(
            name=key,
            service=d.provider_id,
            model=d.model_name,
            state=STATE[effective],
            status=effective.value,
            failure_count=s.failures,
            failure_threshold=policy.failure_threshold,
            recovery_timeout_sec=policy.cooldown_s,
            last_error=s.last_error,
        )
        if s.state is not CircuitState.CLOSED:
            out.opened_at.CopyFrom(timestamp(s.opened_at))
        if s.state is CircuitState.OPEN:
            out.next_attempt_at.CopyFrom(timestamp(s.retry_at))
        return out
