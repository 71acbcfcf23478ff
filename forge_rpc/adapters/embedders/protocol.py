"""What RAG needs from an embedder, whatever runs it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

__all__ = ["Embedder", "Embeddings", "TokenAware"]


@dataclass(frozen=True, slots=True)
class Embeddings:
    vectors: list[list[float]]
    """One vector per input text, in input order."""
    prompt_tokens: int
    """Tokens the embedder read (its own tokenizer's count, or the provider's report)."""


class Embedder(Protocol):
    @property
    def name(self) -> str:
        """ "<provider>/<model>", as namespaces record it, e.g. "local/all-MiniLM-L6-v2"."""
        ...

    @property
    def dimension(self) -> int:
        """Vector length; 0 while unknown (a provider model not called yet)."""
        ...

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        """Unit-length vectors, one per text, in order."""
        ...

    async def embed_counted(self, texts: Sequence[str]) -> Embeddings:
        """`embed` plus the tokens read, for usage reporting."""
        ...


@runtime_checkable
class TokenAware(Protocol):
    """An embedder whose tokenizer can be asked where the tokens are, so chunks fit its input exactly."""

    @property
    def max_tokens(self) -> int:
        """Tokens the model reads per text (longer input is truncated), special tokens excluded."""
        ...

    def token_spans(self, text: str) -> list[tuple[int, int]]:
        """(start, end) character offsets of each token of `text`."""
        ...
