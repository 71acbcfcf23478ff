"""Which embedder a name means: the configured ones by name, and "<provider>/<model>" built on demand by the
factory configured for that provider."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

from ...domain import FieldViolation, InvalidArgument
from .protocol import Embedder

__all__ = ["DEFAULT_EMBEDDER", "EmbedderDirectory"]

DEFAULT_EMBEDDER = "local/all-MiniLM-L6-v2"


class EmbedderDirectory:
    def __init__(
        self,
        embedders: Iterable[Embedder],
        factories: Mapping[str, Callable[[str], Embedder]] | None = None,
        default: str = DEFAULT_EMBEDDER,
    ) -> None:
        """`factories` maps a provider prefix ("openai", "ollama") to a function of the model name."""
        self._known: dict[str, Embedder] = {e.name: e for e in embedders}
        self._factories = dict(factories or {})
        self.default = default

    def resolve(self, name: str, field: str = "embedder") -> Embedder:
        """The embedder `name` means ("" → the default); INVALID_ARGUMENT when none is configured for it."""
        wanted = name or self.default
        if wanted in self._known:
            return self._known[wanted]
        provider, _, model = wanted.partition("/")
        factory = self._factories.get(provider)
        if factory is None or not model:
            choices = sorted(self._known) + [f"{p}/<model>" for p in sorted(self._factories)]
            raise InvalidArgument(
                [FieldViolation(field, f"unknown embedder {wanted!r}; configured: {', '.join(choices) or 'none'}")]
            )
        embedder = self._known[wanted] = factory(model)
        return embedder

    def names(self) -> list[str]:
        return sorted(self._known)

    async def close(self) -> None:
        """Closes the connections of the embedders built so far (those that hold any)."""
        for embedder in self._known.values():
            close = getattr(embedder, "close", None)
            if close is not None:
                await close()
