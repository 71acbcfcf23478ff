"""Training jobs, the task queue and their runners (issue #6)."""

from __future__ import annotations

from .component import Component, Core

__all__ = ["training_component"]


def training_component(core: Core) -> Component:
    return Component("training")
