"""Rate limits, budgets and the response cache (issue #5)."""

from __future__ import annotations

from .component import Component, Core

__all__ = ["limits_component"]


def limits_component(core: Core) -> Component:
    return Component("limits")
