"""Every provider without a lean adapter (Gemini, Anthropic, Bedrock…) goes through litellm.

litellm costs ~4.6 s to import and ~0.3 ms per streamed chunk here, so it is imported only when a deployment
needs it (at start-up, never on a request) and stays off the OpenAI/Ollama hot path.
"""

from __future__ import annotations

import importlib
from collections.abc import AsyncIterator, Sequence
from typing import Any

from ...domain import (
    ChatParams,
    Completion,
    DeadlineExceeded,
    ErrorCode,
    Finished,
    FinishReason,
    ForgeError,
    ProviderAuthError,
    ProviderEvent,
    ProviderProtocolError,
    ProviderRateLimited,
    ProviderUnavailable,
    TextDelta,
    ToolCall,
    ToolCallDelta,
    UsageReport,
    coalesce,
)

__all__ = ["LitellmProvider", "load_litellm"]


def load_litellm() -> Any:
    """Imports litellm once, quietly (the caller sets LITELLM_LOCAL_MODEL_COST_MAP before start-up)."""
    litellm = importlib.import_module("litellm")
    # Module-level switches: no "Provider List" banners on stderr; drop params a provider does not take.
    setattr(litellm, "suppress_debug_info", True)  # noqa: B010 - untyped module attribute
    setattr(litellm, "drop_params", True)  # noqa: B010
    return litellm


class LitellmProvider:
    def __init__(self, kind: str, api_base: str | None, api_key: str | None, env_var: str) -> None:
        self.kind = kind
        self._api_base = api_base
        self._api_key = api_key
        self._env_var = env_var
        self._litellm = load_litellm()

    def _kwargs(self, upstream_model: str, params: ChatParams, timeout: float | None) -> dict[str, Any]:
        kwargs: dict[str, Any] = {
            "model": upstream_model,
            "messages": [m.to_openai() for m in params.messages],
            **params.sampling(),
        }
        if timeout is not None:
            kwargs["timeout"] = timeout
        if self._api_base:
            kwargs["api_base"] = self._api_base
        if self._api_key:
            kwargs["api_key"] = self._api_key
        return kwargs

    def _error(self, exc: Exception) -> ForgeError:
        lm = self._litellm
        detail = str(exc)[:500]
        if isinstance(exc, lm.AuthenticationError | lm.PermissionDeniedError):
            return ProviderAuthError(self.kind, self._env_var, detail)
        if isinstance(exc, lm.RateLimitError):
            return ProviderRateLimited(self.kind, None, detail)
        if isinstance(exc, lm.NotFoundError):
            return ForgeError(detail, ErrorCode.NOT_FOUND, "MODEL_NOT_FOUND", metadata={"provider": self.kind})
        if isinstance(exc, lm.Timeout):
            return DeadlineExceeded(f"provider {self.kind!r} did not answer in time")
        if isinstance(exc, lm.BadRequestError | lm.ContextWindowExceededError):
            return ForgeError(detail, ErrorCode.INVALID_ARGUMENT, "INVALID_ARGUMENT", metadata={"provider": self.kind})
        if isinstance(exc, lm.APIConnectionError | lm.ServiceUnavailableError | lm.InternalServerError):
            return ProviderUnavailable(self.kind, detail)
        return ProviderProtocolError(self.kind, detail)

    async def embed(self, upstream_model: str, texts: Sequence[str]) -> tuple[list[list[float]], int]:
        """litellm's `aembedding` for providers without a lean adapter: (vectors in order, prompt tokens)."""
        kwargs: dict[str, Any] = {"model": upstream_model, "input": list(texts)}
        if self._api_base:
            kwargs["api_base"] = self._api_base
        if self._api_key:
            kwargs["api_key"] = self._api_key
        try:
            resp = await self._litellm.aembedding(**kwargs)
        except Exception as exc:  # litellm raises its own hierarchy; mapped once, in _error
            raise self._error(exc) from exc
        try:
            rows = sorted(resp.data, key=lambda row: int(row["index"]))
            vectors = [[float(v) for v in row["embedding"]] for row in rows]
        except (KeyError, TypeError, ValueError) as exc:
            raise ProviderProtocolError(self.kind, f"unreadable embeddings response: {exc}") from exc
        usage = getattr(resp, "usage", None)
        return vectors, int(getattr(usage, "prompt_tokens", 0) or 0)

    async def complete(self, upstream_model: str, params: ChatParams, timeout: float | None) -> Completion:
        try:
            resp = await self._litellm.acompletion(**self._kwargs(upstream_model, params, timeout))
        except Exception as exc:  # litellm raises its own hierarchy; _error maps every member
            raise self._error(exc) from exc
        choice = resp.choices[0]
        usage = getattr(resp, "usage", None)
        return Completion(
            text=choice.message.content or "",
            finish=FinishReason.parse(choice.finish_reason),
            tool_calls=[
                ToolCall(c.id or "", c.function.name or "", c.function.arguments or "")
                for c in (choice.message.tool_calls or ())
            ],
            usage=UsageReport(usage.prompt_tokens, usage.completion_tokens) if usage else None,
        )

    def stream(self, upstream_model: str, params: ChatParams, timeout: float | None) -> AsyncIterator[ProviderEvent]:
        return coalesce(self._stream(upstream_model, params, timeout))

    async def _stream(
        self, upstream_model: str, params: ChatParams, timeout: float | None
    ) -> AsyncIterator[ProviderEvent]:
        kwargs = self._kwargs(upstream_model, params, timeout)
        try:
            chunks = await self._litellm.acompletion(**kwargs, stream=True, stream_options={"include_usage": True})
        except Exception as exc:
            raise self._error(exc) from exc
        finish: FinishReason | None = None
        usage: UsageReport | None = None
        try:
            async for chunk in chunks:
                u = getattr(chunk, "usage", None)
                if u is not None and (u.prompt_tokens or u.completion_tokens):
                    usage = UsageReport(u.prompt_tokens or 0, u.completion_tokens or 0)
                for choice in chunk.choices or ():
                    delta = choice.delta
                    if delta is not None and delta.content:
                        yield TextDelta(delta.content)
                    for call in (delta.tool_calls if delta is not None else None) or ():
                        fn = call.function
                        yield ToolCallDelta(call.index or 0, call.id or "", fn.name or "", fn.arguments or "")
                    if choice.finish_reason:
                        finish = FinishReason.parse(choice.finish_reason)
        except Exception as exc:
            raise self._error(exc) from exc
        finally:
            # Closes the upstream HTTP stream on cancel; litellm does not do it by itself.
            closer = getattr(getattr(chunks, "completion_stream", None), "aclose", None)
            if closer is not None:
                await closer()
        if usage is not None:
            yield usage
        yield Finished(finish or FinishReason.STOP)
