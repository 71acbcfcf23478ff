"""ChatEngine: routes a chat request to a deployment of its model group (with retries, fallbacks and circuit
breakers, see failover.py) and accounts its usage, for unary and streamed calls."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from .breaker import CircuitBreakers, Gate
from .catalog import Candidate, ModelCatalog, ModelGroup, Route
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
from .errors import ForgeError, ProviderProtocolError
from .failover import Attempt, Failover, OutcomeObserver
from .ports import ChatProvider, PriceList, TokenCounter
from .retry import classify
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
    """Time spent on providers (every attempt, and the waits between them): the rest of a call's latency is
    forge's own overhead."""
    deployment_id: str = ""
    """The deployment that answered (see ModelCatalog): `x-forge-deployment`."""
    attempts: int = 1
    """Attempts it took, retries and fallbacks included: `x-forge-attempts`."""


@dataclass(slots=True)
class ChatStream:
    """One streamed generation. `usage` grows while it runs, so a cancelled stream still knows its cost.

    It is opened up to its first event, so the deployment that serves it is settled (and shown in headers)
    before anything is sent."""

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
    deployment_id: str = ""
    attempts: int = 1
    _first: ProviderEvent | None = None
    _attempt: Attempt | None = None

    async def events(self) -> AsyncIterator[TextDelta | ToolCallDelta]:
        """Deltas as the provider sends them; `usage` and `finish` are final once this is exhausted."""
        attempt, self._attempt = self._attempt, None
        try:
            try:
                first, self._first = self._first, None
                if first is not None:
                    delta = self._absorb(first)
                    if delta is not None:
                        yield delta
                async for event in self._source:
                    delta = self._absorb(event)
                    if delta is not None:
                        yield delta
            finally:
                # A consumer that closes this iterator without cancelling its task must still close the
                # provider's stream now (and with it the upstream request), not whenever the GC gets to it.
                closer = getattr(self._source, "aclose", None)
                if closer is not None:
                    await closer()
            if self.finish is None:
                raise ProviderProtocolError(self.provider, "the stream ended without a finish reason")
        except ForgeError as err:
            if attempt is not None:
                await attempt.failed(err, classify(err))
            raise
        except BaseException:
            if attempt is not None:
                await attempt.abandoned()
            raise
        if attempt is not None:
            await attempt.succeeded()
        self.usage = self.partial_usage()

    def _absorb(self, event: ProviderEvent) -> TextDelta | ToolCallDelta | None:
        if isinstance(event, TextDelta):
            self.usage.completion_tokens += event.chunks
            self._parts.append(event.text)
            return event
        if isinstance(event, ToolCallDelta):
            return event
        if isinstance(event, UsageReport):
            self._reported = event
        else:
            self.finish = event.reason
        return None

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
        *,
        failover: Failover | None = None,
        observer: OutcomeObserver | None = None,
    ) -> None:
        """`observer(provider_id, ok, latency_ms)` hears every attempt's outcome (passive health)."""
        self._catalog = catalog
        self._providers = providers
        self._counter = counter
        self._prices = prices
        self.failover = failover or Failover()
        if observer is not None:
            self.failover.observer = observer

    @property
    def breakers(self) -> CircuitBreakers:
        return self.failover.breakers

    @property
    def observer(self) -> OutcomeObserver | None:
        return self.failover.observer

    @observer.setter
    def observer(self, value: OutcomeObserver | None) -> None:
        self.failover.observer = value

    async def group(self, model: str) -> ModelGroup:
        """The deployments serving `model` (the default model when empty)."""
        catalog = self._catalog.current()
        group = catalog.group(model or (catalog.default_model or ""))
        if group is None:
            # A model pulled into Ollama a moment ago is not in the cached catalog yet.
            group = (await self._catalog.refresh()).resolve_group(model)
        return group

    async def _fallback_group(self, name: str) -> ModelGroup | None:
        return self._catalog.current().group(name)

    async def route(self, model: str) -> tuple[Route, ChatProvider]:
        """Where a call would start now: the balancer's pick among deployments whose breaker is closed."""
        group = await self.group(model)
        closed = [c for c in group.candidates if await self.breakers.gate(c.id) is Gate.PASS]
        pick = self.failover.balancer.pick(closed, self.failover.load) if closed else group.candidates[0]
        return pick.route, self._providers[pick.route.deployment.provider_id]

    async def complete(self, params: ChatParams, timeout: float | None) -> ChatResult:
        validate_chat(params)
        group = await self.group(params.model)
        created = time.time()
        started = time.perf_counter()

        async def call(c: Candidate, limit: float | None) -> Completion:
            provider = self._providers[c.route.deployment.provider_id]
            return await provider.complete(c.route.upstream_model, params, limit)

        served = await self.failover.run(params.model, group, self._fallback_group, call, timeout)
        await served.attempt.succeeded()
        upstream_ms = (time.perf_counter() - started) * 1000
        candidate, completion = served.attempt.candidate, served.value
        route = candidate.route
        usage = self.account(route, params, completion.usage, completion.text)
        kind = self._providers[route.deployment.provider_id].kind
        return ChatResult(route, kind, completion, usage, created, upstream_ms, candidate.id, served.attempts)

    async def open_stream(self, params: ChatParams, timeout: float | None) -> ChatStream:
        """Validates, routes and waits for the first event (retrying and falling back as configured) before
        anything is streamed, so every failure up to then surfaces as a plain status."""
        validate_chat(params)
        group = await self.group(params.model)

        async def call(c: Candidate, limit: float | None) -> tuple[AsyncIterator[ProviderEvent], ProviderEvent]:
            provider = self._providers[c.route.deployment.provider_id]
            source = provider.stream(c.route.upstream_model, params, limit)
            try:
                return source, await anext(source)
            except StopAsyncIteration:
                raise ProviderProtocolError(provider.kind, "the stream ended before its first event") from None
            except BaseException:
                closer = getattr(source, "aclose", None)
                if closer is not None:
                    await closer()
                raise

        created = time.time()
        served = await self.failover.run(params.model, group, self._fallback_group, call, timeout)
        source, first = served.value
        candidate = served.attempt.candidate
        kind = self._providers[candidate.route.deployment.provider_id].kind
        return ChatStream(
            candidate.route,
            kind,
            created,
            source,
            self,
            params,
            deployment_id=candidate.id,
            attempts=served.attempts,
            _first=first,
            _attempt=served.attempt,
        )

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
