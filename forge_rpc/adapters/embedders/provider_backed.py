"""Embeddings from a chat provider adapter that can also embed: Ollama's native `/api/embed` and litellm's
`aembedding` (Gemini, Cohere, Bedrock… — every provider without a lean adapter)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Protocol

from .protocol import Embeddings

__all__ = ["EmbeddingBackend", "ProviderEmbedder"]

# Inputs per upstream call: Ollama and litellm's providers take lists; this bounds one request's size.
_BATCH = 256


class EmbeddingBackend(Protocol):
    async def embed(self, upstream_model: str, texts: Sequence[str]) -> tuple[list[list[float]], int]: ...


def _unit(vector: list[float]) -> list[float]:
    norm = math.sqrt(sum(v * v for v in vector)) or 1.0
    return [v / norm for v in vector]


class ProviderEmbedder:
    """One embeddings model of one provider, named "<route>/<model>" as the namespace records it."""

    def __init__(self, name: str, upstream_model: str, backend: EmbeddingBackend) -> None:
        self._name = name
        self._upstream = upstream_model
        self._backend = backend
        self._dimension = 0

    @property
    def name(self) -> str:
        return self._name

    @property
    def dimension(self) -> int:
        return self._dimension

    async def embed_counted(self, texts: Sequence[str]) -> Embeddings:
        vectors: list[list[float]] = []
        tokens = 0
        for start in range(0, len(texts), _BATCH):
            part, used = await self._backend.embed(self._upstream, texts[start : start + _BATCH])
            vectors.extend(_unit(v) for v in part)
            tokens += used
        if vectors and not self._dimension:
            self._dimension = len(vectors[0])
        return Embeddings(vectors, tokens)

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        return (await self.embed_counted(texts)).vectors
