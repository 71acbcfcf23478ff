"""Load balancing inside a model group: LiteLLM's simple-shuffle (weighted), least-busy and lowest-latency.

Each strategy picks among the deployments the breakers let through, in O(group size) with no allocation beyond
the caller's list. In-flight counts and latencies are this replica's own: they steer its choices, and nothing
depends on them being exact across replicas.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from .catalog import Candidate

__all__ = ["STRATEGIES", "Balancer", "LeastBusy", "LoadTracker", "LowestLatency", "SimpleShuffle", "balancer_named"]

# Weight of the newest sample in the latency average: about the last ten calls count.
EWMA_ALPHA = 0.2


@dataclass(slots=True)
class _Load:
    in_flight: int = 0
    latency_ms: float | None = None


class LoadTracker:
    """Calls in flight and a moving average of latency (time to first token for streams) per deployment."""

    def __init__(self) -> None:
        self._loads: dict[str, _Load] = {}

    def _load(self, key: str) -> _Load:
        load = self._loads.get(key)
        if load is None:
            load = self._loads[key] = _Load()
        return load

    def started(self, key: str) -> None:
        self._load(key).in_flight += 1

    def ended(self, key: str) -> None:
        load = self._load(key)
        load.in_flight = max(0, load.in_flight - 1)

    def observe(self, key: str, latency_ms: float) -> None:
        load = self._load(key)
        previous = load.latency_ms
        load.latency_ms = latency_ms if previous is None else previous + EWMA_ALPHA * (latency_ms - previous)

    def in_flight(self, key: str) -> int:
        load = self._loads.get(key)
        return load.in_flight if load is not None else 0

    def latency_ms(self, key: str) -> float | None:
        load = self._loads.get(key)
        return load.latency_ms if load is not None else None


class Balancer(Protocol):
    def pick(self, candidates: Sequence[Candidate], load: LoadTracker) -> Candidate:
        """One of `candidates` (never empty)."""
        ...


def weight(c: Candidate) -> float:
    """LiteLLM's order: an explicit `weight`, else `rpm`, else `tpm`, else 1 (carried in the deployment's info)."""
    info: Mapping[str, object] = c.route.deployment.info
    for key in ("weight", "rpm", "tpm"):
        value = info.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0:
            return float(value)
    return 1.0


class SimpleShuffle:
    """A random deployment, in proportion to its weight."""

    def __init__(self, rng: random.Random | None = None) -> None:
        self._rng = rng or random.Random()

    def pick(self, candidates: Sequence[Candidate], load: LoadTracker) -> Candidate:
        if len(candidates) == 1:
            return candidates[0]
        weights = [weight(c) for c in candidates]
        point = self._rng.random() * sum(weights)
        for c, w in zip(candidates, weights, strict=True):
            point -= w
            if point < 0:
                return c
        return candidates[-1]


class LeastBusy:
    """The deployment with the fewest calls in flight; ties are broken at random so idle load spreads."""

    def __init__(self, rng: random.Random | None = None) -> None:
        self._rng = rng or random.Random()

    def pick(self, candidates: Sequence[Candidate], load: LoadTracker) -> Candidate:
        best: list[Candidate] = []
        fewest = -1
        for c in candidates:
            n = load.in_flight(c.id)
            if fewest < 0 or n < fewest:
                best, fewest = [c], n
            elif n == fewest:
                best.append(c)
        return best[0] if len(best) == 1 else self._rng.choice(best)


class LowestLatency:
    """The deployment with the lowest average latency; one never measured goes first, so each gets measured."""

    def pick(self, candidates: Sequence[Candidate], load: LoadTracker) -> Candidate:
        best, best_ms = candidates[0], float("inf")
        for c in candidates:
            ms = load.latency_ms(c.id)
            if ms is None:
                return c
            if ms < best_ms:
                best, best_ms = c, ms
        return best


# LiteLLM's strategy names (and forge's short ones). usage-based routing is served by the weighted shuffle,
# which is what LiteLLM itself recommends for throughput: rpm/tpm set the proportions.
STRATEGIES = {
    "simple-shuffle": "shuffle",
    "shuffle": "shuffle",
    "usage-based-routing": "shuffle",
    "usage-based-routing-v2": "shuffle",
    "least-busy": "least-busy",
    "latency-based-routing": "lowest-latency",
    "lowest-latency": "lowest-latency",
}


def balancer_named(name: str, rng: random.Random | None = None) -> Balancer:
    kind = STRATEGIES[name]
    if kind == "least-busy":
        return LeastBusy(rng)
    if kind == "lowest-latency":
        return LowestLatency()
    return SimpleShuffle(rng)
