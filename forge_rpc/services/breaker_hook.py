"""The hook through which RoutingService reads circuit breakers, which live in the engine (another part of
issue #5). Anything with a `snapshot()` of breaker states fits; until one is connected every breaker reads
as closed."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

__all__ = ["BreakerBoard", "BreakerState", "open_deployments", "worst_state"]

_RANK = {"closed": 0, "half_open": 1, "open": 2}


class BreakerState(Protocol):
    """One deployment's breaker."""

    @property
    def provider_id(self) -> str:
        """The deployment's provider (`Deployment.provider_id`)."""
        ...

    @property
    def model(self) -> str:
        """The deployment's model name (`Deployment.model_name`, e.g. "gpt-4o-mini" or "openai/*")."""
        ...

    @property
    def status(self) -> str:
        """ "closed", "open" or "half_open"."""
        ...


class BreakerBoard(Protocol):
    def snapshot(self) -> Sequence[BreakerState]: ...


def worst_state(board: BreakerBoard | None, provider_id: str) -> str:
    """A service's worst breaker: "closed" when it has none (or none is connected)."""
    if board is None:
        return "closed"
    states = [b.status for b in board.snapshot() if b.provider_id == provider_id]
    return max(states, key=lambda s: _RANK.get(s, 0), default="closed")


def open_deployments(board: BreakerBoard | None) -> set[tuple[str, str]]:
    """(provider id, model name) of every deployment whose breaker is open now."""
    if board is None:
        return set()
    return {(b.provider_id, b.model) for b in board.snapshot() if b.status == "open"}
