"""ChatEngine: routes a chat request to its provider and accounts its usage, for unary and streamed calls."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from .catalog import ModelCatalog, Route
from .chat import (
    ChatParams,
    Completion,
    FinishReason,
    ProviderEvent,
    TextDelta,
    ToolCallDelta,
    Usage,
    UsageReport,
)
from .errors import ProviderProtocolError
from .ports import ChatProvider, PriceList, TokenCounter
from .validation import validate_chat

__all__ = ["CatalogSource", "ChatEngine", "ChatResult", "ChatStream"]


class CatalogSource(Protocol):
    """The current model catalog, and a way to refresh it when a name is not (yet) known."""

    def current(self) -> ModelCatalog: ...

    async def refresh(self) -> ModelCatalog: ...


@dataclass(slots=True)
class ChatResult:
    route: Route
    provider: str
    completion: Completion
    usage: Usage
    created: float
    upstream_ms: float = 0.0
    """Time spent waiting for the provider: the rest of a call's latency is forge's own overhead."""


@dataclass(slots=True)
class ChatStream:
    """One streamed generation. `usage` grows while it runs, so a cancelled stream still knows its cost."""

    route: Route
    provider: str
    created: float
    _source: AsyncIterator[ProviderEvent]
    _engine: ChatEngine
    _params: ChatParams
    usage: Usage = field(default_factory=Usage)
    finish: FinishReason | None = None
    _parts: list[str] = field(default_factory=list)
    _reported: UsageReport | None = None

    async def events(self) -> AsyncIterator[TextDelta | ToolCallDelta]:
        """Deltas as the provider sends them; `usage` and `finish` are final once this is exhausted."""
        try:
            async for event in self._source:
                if isinstance(event, TextDelta):
                    self.usage.completion_tokens += event.chunks
                    self._parts.append(event.text)
                    yield event
                elif isinstance(event, ToolCallDelta):
                    yield event
                elif isinstance(event, UsageReport):
                    self._reported = event
                else:
                    self.finish = event.reason
        finally:
            # A consumer that closes this iterator without cancelling its task must still close the provider's
            # stream now (and with it the upstream request), not whenever the garbage collector gets to it.
            closer = getattr(self._source, "aclose", None)
            if closer is not None:
                await closer()
        if self.finish is None:
            raise ProviderProtocolError(self.provider, "the stream ended without a finish reason")
        self.usage = self.partial_usage()

    def partial_usage(self) -> Usage:
        """Usage so far, accounted like a finished stream: what a cancelled or failed stream is billed."""
        return self._engine.account(self.route, self._params, self._reported, "".join(self._parts))


class ChatEngine:
    def __init__(
        self,
        catalog: CatalogSource,
        providers: Mapping[str, ChatProvider],
        counter: TokenCounter,
        prices: PriceList,
    ) -> None:
        self._catalog = catalog
        self._providers = providers
        self._counter = counter
        self._prices = prices

    async def route(self, model: str) -> tuple[Route, ChatProvider]:
        route = self._catalog.current().find(model or (self._catalog.current().default_model or ""))
        if route is None:
            # A model pulled into Ollama a moment ago is not in the cached catalog yet.
            route = (await self._catalog.refresh()).resolve(model)
        return route, self._providers[route.deployment.provider_id]

    async def complete(self, params: ChatParams, timeout: float | None) -> ChatResult:
        validate_chat(params)
        route, provider = await self.route(params.model)
        created = time.time()
        started = time.perf_counter()
        completion = await provider.complete(route.upstream_model, params, timeout)
        upstream_ms = (time.perf_counter() - started) * 1000
        usage = self.account(route, params, completion.usage, completion.text)
        return ChatResult(route, provider.kind, completion, usage, created, upstream_ms)

    async def open_stream(self, params: ChatParams, timeout: float | None) -> ChatStream:
        """Validates and routes before any byte is streamed, so those errors surface as a plain status."""
        validate_chat(params)
        route, provider = await self.route(params.model)
        source = provider.stream(route.upstream_model, params, timeout)
        return ChatStream(route, provider.kind, time.time(), source, self, params)

    def account(self, route: Route, params: ChatParams, reported: UsageReport | None, text: str) -> Usage:
        model = route.upstream_model
        if reported is not None:
            usage = Usage(reported.prompt_tokens, reported.completion_tokens)
        else:
            usage = Usage(
                self._counter.count_prompt(model, params),
                self._counter.count_text(model, text),
                estimated=True,
            )
        usage.cost_usd = self._prices.cost(model, usage.prompt_tokens, usage.completion_tokens)
        return usage
