"""The ModelsService: the provider catalog, shared pulls, and (issue #4) the model repository."""

from __future__ import annotations

from ..domain import PullHub
from ..services.models import ModelsServicer
from .component import Component, Core

__all__ = ["models_component"]


def models_component(core: Core) -> Component:
    return Component("models", {"forge.models.v1.ModelsService": [ModelsServicer(core.directory, PullHub())]})
