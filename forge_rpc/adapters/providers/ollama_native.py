"""Ollama through its own client and native API: chat, and the model lifecycle (list, show, pull, delete)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from typing import Any

import httpx
import ollama
import orjson

from ...domain import (
    ChatParams,
    Completion,
    DeadlineExceeded,
    Finished,
    FinishReason,
    ForgeError,
    ModelRecord,
    ProviderEvent,
    ProviderProtocolError,
    ProviderUnavailable,
    PullUpdate,
    TextDelta,
    ToolCall,
    ToolCallDelta,
    UsageReport,
    coalesce,
)
from .upstream_errors import upstream_error

__all__ = ["OllamaProvider"]


class OllamaProvider:
    kind = "ollama"

    def __init__(self, host: str) -> None:
        self.host = host
        self._client = ollama.AsyncClient(host=host)

    async def close(self) -> None:
        await self._client._client.aclose()

    async def available(self, timeout: float = 0.5) -> bool:
        try:
            async with httpx.AsyncClient(timeout=timeout) as probe:
                return (await probe.get(f"{self.host.rstrip('/')}/api/version")).status_code == 200
        except (httpx.HTTPError, OSError):
            return False

    @staticmethod
    def _options(params: ChatParams) -> dict[str, Any]:
        opts: dict[str, Any] = {}
        for key in ("temperature", "top_p", "seed", "presence_penalty", "frequency_penalty"):
            value = getattr(params, key)
            if value is not None:
                opts[key] = value
        if params.max_tokens is not None:
            opts["num_predict"] = params.max_tokens
        if params.stop:
            opts["stop"] = params.stop
        return opts

    def _format(self, params: ChatParams) -> Any:
        rf = params.response_format or {}
        if rf.get("type") == "json_object":
            return "json"
        if rf.get("type") == "json_schema":
            return (rf.get("json_schema") or {}).get("schema")
        return None

    def _error(self, exc: BaseException) -> ForgeError:
        if isinstance(exc, ollama.ResponseError):
            status = exc.status_code
            if status < 100:  # an error line inside a 200 stream (e.g. a pull of an unknown model)
                missing = "does not exist" in exc.error or "not found" in exc.error
                status = 404 if missing else 502
            return upstream_error(self.kind, "OLLAMA_HOST", status, str(exc.error).encode(), {})
        if isinstance(exc, httpx.TimeoutException):
            return DeadlineExceeded(f"Ollama at {self.host} did not answer in time")
        if isinstance(exc, (ConnectionError, httpx.ConnectError)):
            return ProviderUnavailable(self.kind, f"cannot reach Ollama at {self.host} (set OLLAMA_HOST)")
        return ProviderProtocolError(self.kind, f"{type(exc).__name__}: {exc}")

    def stream(self, upstream_model: str, params: ChatParams, timeout: float | None) -> AsyncIterator[ProviderEvent]:
        return coalesce(self._stream(upstream_model, params, timeout))

    async def _stream(
        self, upstream_model: str, params: ChatParams, timeout: float | None
    ) -> AsyncIterator[ProviderEvent]:
        try:
            async with asyncio.timeout(timeout):
                parts = await self._client.chat(
                    model=upstream_model,
                    messages=[m.to_openai() for m in params.messages],
                    tools=params.tools or None,
                    stream=True,
                    format=self._format(params),
                    options=self._options(params),
                )
                async for part in parts:
                    if part.message.content:
                        yield TextDelta(part.message.content)
                    for i, call in enumerate(part.message.tool_calls or ()):
                        yield ToolCallDelta(i, f"call_{i}", call.function.name, _arguments(call.function.arguments))
                    if part.done:
                        yield UsageReport(part.prompt_eval_count or 0, part.eval_count or 0)
                        yield Finished(FinishReason.parse(part.done_reason))
                        return
            raise ProviderProtocolError(self.kind, "the stream ended before done")
        except (ollama.ResponseError, httpx.HTTPError, ConnectionError, ValueError) as exc:
            raise self._error(exc) from exc
        except TimeoutError as exc:
            raise DeadlineExceeded(f"Ollama at {self.host} did not finish in time") from exc

    async def complete(self, upstream_model: str, params: ChatParams, timeout: float | None) -> Completion:
        try:
            async with asyncio.timeout(timeout):
                resp = await self._client.chat(
                    model=upstream_model,
                    messages=[m.to_openai() for m in params.messages],
                    tools=params.tools or None,
                    stream=False,
                    format=self._format(params),
                    options=self._options(params),
                )
        except (ollama.ResponseError, httpx.HTTPError, ConnectionError, ValueError) as exc:
            raise self._error(exc) from exc
        except TimeoutError as exc:
            raise DeadlineExceeded(f"Ollama at {self.host} did not finish in time") from exc
        calls = [
            ToolCall(f"call_{i}", c.function.name, _arguments(c.function.arguments))
            for i, c in enumerate(resp.message.tool_calls or ())
        ]
        return Completion(
            text=resp.message.content or "",
            finish=FinishReason.TOOL_CALLS if calls else FinishReason.parse(resp.done_reason),
            tool_calls=calls,
            usage=UsageReport(resp.prompt_eval_count or 0, resp.eval_count or 0),
        )

    async def embed(self, upstream_model: str, texts: Sequence[str]) -> tuple[list[list[float]], int]:
        """Ollama's native `/api/embed`: (vectors in input order, prompt tokens it read)."""
        try:
            resp = await self._client.embed(model=upstream_model, input=list(texts))
        except (ollama.ResponseError, httpx.HTTPError, ConnectionError, ValueError) as exc:
            raise self._error(exc) from exc
        vectors = [[float(v) for v in row] for row in resp.embeddings]
        return vectors, int(resp.prompt_eval_count or 0)

    async def list_models(self) -> Sequence[ModelRecord]:
        try:
            listing = await self._client.list()
        except (ollama.ResponseError, httpx.HTTPError, ConnectionError) as exc:
            raise self._error(exc) from exc
        return [self._record(m.model or "", m) for m in listing.models]

    def _record(self, name: str, m: Any) -> ModelRecord:
        """From a /api/tags entry or a /api/show answer (which has no size or digest)."""
        details = m.details
        digest = getattr(m, "digest", None) or ""
        return ModelRecord(
            name=name,
            provider=self.kind,
            owned_by="ollama",
            capabilities=["chat", "completion"],
            size_bytes=int(getattr(m, "size", None) or 0),
            # /api/tags gives bare hex; pulls and the seeds spell digests "sha256:<hex>".
            digest=digest if not digest or ":" in digest else f"sha256:{digest}",
            modified_at=m.modified_at.timestamp() if m.modified_at else None,
            family=(details.family or "") if details else "",
            families=list(details.families or []) if details else [],
            format=(details.format or "") if details else "",
            parameter_size=(details.parameter_size or "") if details else "",
            quantization_level=(details.quantization_level or "") if details else "",
            upstream_model=name,
        )

    async def show(self, model: str) -> ModelRecord:
        try:
            shown = await self._client.show(model)
        except (ollama.ResponseError, httpx.HTTPError, ConnectionError) as exc:
            raise self._error(exc) from exc
        record = self._record(model, shown)
        record.capabilities = list(shown.capabilities or record.capabilities)
        info = shown.modelinfo or {}
        record.context_length = int(next((v for k, v in info.items() if k.endswith(".context_length")), 0) or 0)
        return record

    async def pull(self, model: str, insecure: bool) -> AsyncIterator[PullUpdate]:
        try:
            progress = await self._client.pull(model, insecure=insecure, stream=True)
            async for p in progress:
                status = p.status or ""
                yield PullUpdate(status, p.digest or "", int(p.total or 0), int(p.completed or 0), status == "success")
        except (ollama.ResponseError, httpx.HTTPError, ConnectionError) as exc:
            raise self._error(exc) from exc

    async def delete(self, model: str) -> None:
        try:
            await self._client.delete(model)
        except (ollama.ResponseError, httpx.HTTPError, ConnectionError) as exc:
            raise self._error(exc) from exc


def _arguments(raw: Any) -> str:
    return raw if isinstance(raw, str) else orjson.dumps(raw).decode()
