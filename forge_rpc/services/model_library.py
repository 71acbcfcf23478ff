"""ModelsService.SearchModelLibrary (seed 002 `/api/ollama/library`): models one can pull, found by words in
their name, description or tags."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from forge.models.v1 import models_pb2 as pb

from ..adapters.model_library import LibraryEntry, ollama_library
from .context import CallContext
from .paging import next_page_token, page_offset, page_size

__all__ = ["ModelLibraryServicer"]


class ModelLibraryServicer:
    def __init__(self, catalogue: Callable[[], Sequence[LibraryEntry]] = ollama_library) -> None:
        self._catalogue = catalogue

    async def SearchModelLibrary(
        self, request: pb.SearchModelLibraryRequest, context: CallContext
    ) -> pb.SearchModelLibraryResponse:
        words = request.query.lower().split()
        size, offset = page_size(request.page_size, default=50), page_offset(request.page_token)
        found = [
            e
            for e in self._catalogue()
            if all(w in f"{e.name} {e.description} {' '.join(e.tags)}".lower() for w in words)
        ]
        page = found[offset : offset + size]
        return pb.SearchModelLibraryResponse(
            models=[pb.LibraryModel(name=e.name, description=e.description, tags=e.tags) for e in page],
            next_page_token=next_page_token(offset, len(page), len(found)),
        )
