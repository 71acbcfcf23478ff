"""ModelsService's repository RPCs: stored preferences per model (description, favourite, default, tags), and
a sync with what the providers actually list.

Preferences are server-wide (the default model changes every caller's requests), so writing them needs the
admin role; with auth off the local operator is admin. Reads are open to every caller.
"""

from __future__ import annotations

from forge.models.v1 import models_pb2

from ..adapters.providers.directory import ProviderDirectory
from ..adapters.store.model_preferences_cache import PreferenceCache
from ..adapters.store.model_repository import ModelRepositoryStore
from ..domain import ErrorCode, ForgeError, PermissionDenied
from .context import CallContext, principal
from .model_repository_convert import (
    create_changes,
    name_problem,
    repository_message,
    require_name,
    update_changes,
)
from .paging import next_page_token, page_offset, page_size

__all__ = ["ModelRepositoryServicer"]

UPDATED = "Model updated successfully"  # seed 002's message


def _require_admin() -> None:
    if not principal.get().is_admin:
        raise PermissionDenied("changing the model repository needs the admin role", "ADMIN_ONLY")


def _already_exists(name: str) -> ForgeError:
    return ForgeError(
        f"model {name!r} is already in the repository; update it instead",
        ErrorCode.ALREADY_EXISTS,
        "ALREADY_EXISTS",
        metadata={"model": name},
    )


def _not_found(name: str, why: str = "is neither in the repository nor listed by any provider") -> ForgeError:
    return ForgeError(
        f"model {name!r} {why}",
        ErrorCode.NOT_FOUND,
        "NOT_FOUND",
        metadata={"model": name},
    )


def _not_servable(name: str) -> ForgeError:
    return ForgeError(
        f"model {name!r} is not listed by any provider, so it cannot be the default; pull or configure it first",
        ErrorCode.FAILED_PRECONDITION,
        "MODEL_NOT_AVAILABLE",
        metadata={"model": name},
    )


class ModelRepositoryServicer:
    def __init__(self, store: ModelRepositoryStore, cache: PreferenceCache, directory: ProviderDirectory) -> None:
        self._store = store
        self._cache = cache
        self._directory = directory

    async def _listed_by(self, name: str) -> str | None:
        """The kind of the provider listing `name`, or None. Asks Ollama again before saying no: a model pulled
        outside forge a moment ago is not in the cached list yet (and writes are rare enough to afford it)."""
        for attempt in range(2):
            kind = next((r.provider for r in await self._directory.list_models() if r.name == name), None)
            if kind is not None or attempt:
                return kind
            await self._directory.refresh(force=True)
        return None

    async def ListRepositoryModels(
        self, request: models_pb2.ListRepositoryModelsRequest, context: CallContext
    ) -> models_pb2.ListRepositoryModelsResponse:
        size = page_size(request.page_size)
        start = page_offset(request.page_token)
        rows, total = await self._store.page(start, size, request.favorites_only)
        return models_pb2.ListRepositoryModelsResponse(
            models=[repository_message(r) for r in rows], next_page_token=next_page_token(start, len(rows), total)
        )

    async def GetRepositoryModel(
        self, request: models_pb2.GetRepositoryModelRequest, context: CallContext
    ) -> models_pb2.RepositoryModel:
        name = require_name(request.name)
        row = await self._store.get(name)
        if row is None:
            raise _not_found(name, "is not in the repository; a sync adds every model the providers list")
        return repository_message(row, await self._store.stats(name))

    async def CreateRepositoryModel(
        self, request: models_pb2.CreateRepositoryModelRequest, context: CallContext
    ) -> models_pb2.RepositoryModel:
        _require_admin()
        changes = create_changes(request.model)
        name = request.model.name
        # Preferences for a model no provider has yet are fine (it may be pulled later); defaulting to it is not.
        seen = await self._listed_by(name)
        if changes.is_default and seen is None:
            raise _not_servable(name)
        row = await self._store.create(name, changes, seen)
        if row is None:
            raise _already_exists(name)
        await self._cache.reload()
        return repository_message(row)

    async def UpdateRepositoryModel(
        self, request: models_pb2.UpdateRepositoryModelRequest, context: CallContext
    ) -> models_pb2.UpdateRepositoryModelResponse:
        _require_admin()
        changes = update_changes(request)
        name = request.name
        seen = None
        if changes.is_default:
            seen = await self._listed_by(name)
            if seen is None:
                raise _not_servable(name)
        row = await self._store.update(name, changes, seen, create=False)
        if row is None:
            # Every model a provider lists belongs in the repository, synced or not: the seed's PUT works on
            # any installed model, so the entry is created on first update.
            seen = seen or await self._listed_by(name)
            if seen is None:
                raise _not_found(name)
            row = await self._store.update(name, changes, seen, create=True)
            if row is None:  # the row was inserted in the same transaction, so this cannot happen
                raise _not_found(name)
        await self._cache.reload()
        return models_pb2.UpdateRepositoryModelResponse(success=True, message=UPDATED, model=repository_message(row))

    async def SyncRepository(
        self, request: models_pb2.SyncRepositoryRequest, context: CallContext
    ) -> models_pb2.SyncRepositoryResponse:
        _require_admin()
        # A sync is an explicit "look again": ask Ollama now rather than trust the discovery TTL.
        await self._directory.refresh(force=True)
        listed = {r.name: r.provider for r in await self._directory.list_models() if name_problem(r.name) is None}
        result = await self._store.sync(listed)
        await self._cache.reload()
        return models_pb2.SyncRepositoryResponse(added=result.added, missing=result.missing, total=result.total)
