"""In-flight call counters of this process, kept by the pipeline and read by the metrics snapshot."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["InFlight"]


@dataclass(slots=True)
class InFlight:
    requests: int = 0
    """Calls being served now (unary and streams), not counting long-lived Watch… subscriptions."""
    streams: int = 0
    """Of those, server streams (token streams, pulls)."""
