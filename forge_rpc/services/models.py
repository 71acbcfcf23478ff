"""ModelsService: listing across providers, show, shared pulls with progress, delete."""

from __future__ import annotations

from collections.abc import AsyncIterator

from forge.models.v1 import models_pb2

from ..adapters.providers.directory import ProviderDirectory
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


def model_message(r: ModelRecord, default_model: str | None) -> models_pb2.Model:
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
    return m


class ModelsServicer:
    def __init__(self, directory: ProviderDirectory, pulls: PullHub) -> None:
        self._directory = directory
        self._pulls = pulls

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
        return models_pb2.ListModelsResponse(
            models=[model_message(r, default) for r in page],
            next_page_token=next_page_token(start, len(page), len(records)),
            default_model=default,
            active_model=default,
        )

    async def GetModel(self, request: models_pb2.GetModelRequest, context: CallContext) -> models_pb2.Model:
        if not request.name:
            raise InvalidArgument([FieldViolation("name", "required")])
        record = await self._directory.find_record(request.name)
        return model_message(record, self._directory.current().default_model)

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
