"""ModelsService: listing across providers (with the model repository's stored preferences merged in), show,
shared pulls with progress, delete. The repository's own RPCs are in model_repository.py."""

from __future__ import annotations

from collections.abc import AsyncIterator

from forge.models.v1 import models_pb2

from ..adapters.providers.directory import ProviderDirectory
from ..adapters.store.model_preferences_cache import PreferenceCache, PreferenceSnapshot
from ..adapters.store.model_repository import RepositoryRow
from ..domain import FailedPrecondition, FieldViolation, InvalidArgument, ModelRecord, PullHub
from .context import CallContext
from .paging import next_page_token, page_offset, page_size
from .timestamps import timestamp

__all__ = ["ModelsServicer"]


def human_size(n: int) -> str:
    if n <= 0:
        return ""
    size = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1000:
            return f"{size:.1f} {unit}" if unit != "B" else f"{int(size)} B"
        size /= 1000
    return f"{size:.1f} TB"


def model_message(r: ModelRecord, default_model: str | None, prefs: RepositoryRow | None = None) -> models_pb2.Model:
    m = models_pb2.Model(
        name=r.name,
        provider=r.provider,
        owned_by=r.owned_by,
        capabilities=r.capabilities,
        size_bytes=r.size_bytes,
        size=human_size(r.size_bytes),
        digest=r.digest,
        details=models_pb2.ModelDetails(
            format=r.format,
            family=r.family,
            families=r.families,
            parameter_size=r.parameter_size,
            quantization_level=r.quantization_level,
        ),
        context_length=r.context_length,
        is_default=r.name == default_model,
        upstream_model=r.upstream_model,
        status="available",
    )
    if r.modified_at is not None:
        m.modified_at.CopyFrom(timestamp(r.modified_at))
    if prefs is not None:
        # is_default stays the directory's answer: a stored default that vanished is not the one requests use.
        m.is_favorite, m.description = prefs.is_favorite, prefs.description
        m.tags.extend(prefs.tags)
    return m


_NO_PREFERENCES = PreferenceSnapshot()


class ModelsServicer:
    def __init__(
        self, directory: ProviderDirectory, pulls: PullHub, preferences: PreferenceCache | None = None
    ) -> None:
        self._directory = directory
        self._pulls = pulls
        self._preferences = preferences

    def _prefs(self) -> PreferenceSnapshot:
        """In memory: listings never wait on the database."""
        return self._preferences.current() if self._preferences is not None else _NO_PREFERENCES

    async def ListModels(
        self, request: models_pb2.ListModelsRequest, context: CallContext
    ) -> models_pb2.ListModelsResponse:
        size = page_size(request.page_size)
        start = page_offset(request.page_token)
        records = [
            r
            for r in await self._directory.list_models()
            if (not request.provider or r.provider == request.provider)
            and (not request.capability or request.capability in r.capabilities)
        ]
        default = self._directory.current().default_model or ""
        page = records[start : start + size]
        prefs = self._prefs().rows
        return models_pb2.ListModelsResponse(
            models=[model_message(r, default, prefs.get(r.name)) for r in page],
            next_page_token=next_page_token(start, len(page), len(records)),
            default_model=default,
            active_model=default,
        )

    async def GetModel(self, request: models_pb2.GetModelRequest, context: CallContext) -> models_pb2.Model:
        if not request.name:
            raise InvalidArgument([FieldViolation("name", "required")])
        record = await self._directory.find_record(request.name)
        return model_message(record, self._directory.current().default_model, self._prefs().rows.get(record.name))

    async def PullModel(
        self, request: models_pb2.PullModelRequest, context: CallContext
    ) -> AsyncIterator[models_pb2.PullProgress]:
        name = request.model.removeprefix("ollama/")
        if not name:
            raise InvalidArgument([FieldViolation("model", "required")])
        if request.provider not in ("", "ollama"):
            raise FailedPrecondition(f"provider {request.provider!r} cannot pull models; only Ollama can")
        ollama = self._directory.ollama
        if ollama is None or not await ollama.available():
            raise FailedPrecondition(
                f"no Ollama answers at {ollama.host if ollama else 'OLLAMA_HOST'}; start Ollama or set OLLAMA_HOST",
                "DEPENDENCY_UNAVAILABLE",
            )
        async for u in self._pulls.follow(f"ollama:{name}", lambda: ollama.pull(name, request.insecure)):
            percent = 100.0 if u.done else (u.completed * 100.0 / u.total if u.total else 0.0)
            yield models_pb2.PullProgress(
                status=u.status,
                digest=u.digest,
                total=u.total,
                completed=u.completed,
                percent=round(percent, 2),
                model=name,
                done=u.done,
                message=f"Successfully pulled {name}" if u.done else "",
            )
            if u.done:
                await self._directory.refresh(force=True)

    async def DeleteModel(
        self, request: models_pb2.DeleteModelRequest, context: CallContext
    ) -> models_pb2.DeleteModelResponse:
        name = request.name.removeprefix("ollama/")
        if not name:
            raise InvalidArgument([FieldViolation("name", "required")])
        ollama = self._directory.ollama
        if ollama is None:
            raise FailedPrecondition("Ollama discovery is off; only Ollama models can be deleted")
        await ollama.delete(name)
        await self._directory.refresh(force=True)
        return models_pb2.DeleteModelResponse(
            deleted=True, model=name, success=True, message=f"Model '{name}' deleted successfully"
        )
