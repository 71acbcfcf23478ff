"""Circuit breakers (issue #5)."""

from __future__ import annotations

from .component import Component, Core

__all__ = ["resilience_component"]


def resilience_component(core: Core) -> Component:
    return Component("resilience")
