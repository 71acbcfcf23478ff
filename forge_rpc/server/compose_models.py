"""The ModelsService: the provider catalog, shared pulls, and (issue #4) the model repository."""

from __future__ import annotations

from ..adapters.store.model_preferences_cache import PreferenceCache
from ..adapters.store.model_repository import ModelRepositoryStore
from ..domain import PullHub
from ..services.model_library import ModelLibraryServicer
from ..services.model_repository import ModelRepositoryServicer
from ..services.models import ModelsServicer
from .component import Component, Core, Resources

__all__ = ["models_component"]


def models_component(core: Core) -> Component:
    store = ModelRepositoryStore()  # the pool is bound at start
    # The cache hands the stored default to the directory: at start, after each write, and when a reload sees
    # another replica's change.
    preferences = PreferenceCache(store, core.directory.set_preferred_default)

    async def start(resources: Resources) -> None:
        store.bind(resources.pool)
        await preferences.start()

    return Component(
        "models",
        {
            "forge.models.v1.ModelsService": [
                ModelsServicer(core.directory, PullHub(), preferences),
                ModelRepositoryServicer(store, preferences, core.directory),
                ModelLibraryServicer(),
            ]
        },
        start=start,
        stop=preferences.stop,
    )
