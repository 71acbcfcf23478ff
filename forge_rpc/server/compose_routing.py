"""Routing rules, tasks, provider keys and config (issue #5)."""

from __future__ import annotations

from .component import Component, Core

__all__ = ["routing_component"]


def routing_component(core: Core) -> Component:
    return Component("routing")
