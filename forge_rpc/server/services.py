"""Every forge service this server exposes (the generated registry), and where unimplemented ones are planned."""

from __future__ import annotations

from forge.registry import SERVICES as _ALL
from google.protobuf.descriptor import ServiceDescriptor

__all__ = ["PLANNED_IN", "SERVICES"]

SERVICES: dict[str, ServiceDescriptor] = {d.full_name: d for d in _ALL}

# Named in UNIMPLEMENTED answers so a caller knows the RPC is designed, not forgotten.
PLANNED_IN = {
    "forge.models.v1.ModelsService": "the model repository arrives with durable state, issue #4",
    "forge.analytics.v1.AnalyticsService": "analytics arrive with the usage ledger, issue #4",
    "forge.routing.v1.RoutingService": "the circuit-breaker RPCs arrive with issue #5",
}
