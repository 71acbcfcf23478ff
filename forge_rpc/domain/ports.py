"""What the domain needs from the outside world; adapters implement these protocols."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from .chat import ChatParams, Completion, ProviderEvent

__all__ = ["ChatProvider", "ModelRecord", "ModelSource", "PriceList", "PullUpdate", "TokenCounter"]


class ChatProvider(Protocol):
    """Generates chat completions for one configured provider instance."""

    kind: str

    def stream(self, upstream_model: str, params: ChatParams, timeout: float | None) -> AsyncIterator[ProviderEvent]:
        """Streams events; closing the iterator (or cancelling the task) must close the upstream at once."""
        ...

    async def complete(self, upstream_model: str, params: ChatParams, timeout: float | None) -> Completion: ...


@dataclass(slots=True)
class ModelRecord:
    """A model as a provider lists it."""

    name: str
    provider: str
    owned_by: str = ""
    capabilities: list[str] = field(default_factory=lambda: ["chat"])
    size_bytes: int = 0
    digest: str = ""
    modified_at: float | None = None
    family: str = ""
    families: list[str] = field(default_factory=list)
    format: str = ""
    parameter_size: str = ""
    quantization_level: str = ""
    context_length: int = 0
    upstream_model: str = ""


@dataclass(slots=True)
class PullUpdate:
    status: str
    digest: str = ""
    total: int = 0
    completed: int = 0
    done: bool = False


class ModelSource(Protocol):
    """A provider that can list its models and, for local ones, pull and delete them."""

    kind: str

    async def list_models(self) -> Sequence[ModelRecord]: ...

    def pull(self, model: str, insecure: bool) -> AsyncIterator[PullUpdate]: ...

    async def delete(self, model: str) -> None: ...

    async def show(self, model: str) -> ModelRecord: ...


class TokenCounter(Protocol):
    """Counts tokens when a provider reports no usage."""

    def count_prompt(self, model: str, params: ChatParams) -> int: ...

    def count_text(self, model: str, text: str) -> int: ...


class PriceList(Protocol):
    def cost(self, model: str, prompt_tokens: int, completion_tokens: int) -> float: ...
