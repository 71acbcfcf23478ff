"""A lean streaming adapter for OpenAI-compatible HTTP APIs (OpenAI, DeepSeek, OpenRouter, vLLM, llama.cpp…).

This is the hot path: one pooled aiohttp session per provider, `readany()` and orjson, no per-chunk objects
beyond the delta itself. Everything the socket already holds when the reader comes back is merged into one
delta, which is how a slow consumer gets fewer, larger messages without any timer.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import orjson

from ...domain import (
    ChatParams,
    Completion,
    DeadlineExceeded,
    Finished,
    FinishReason,
    ForgeError,
    ProviderEvent,
    ProviderProtocolError,
    ProviderUnavailable,
    TextDelta,
    ToolCall,
    ToolCallDelta,
    UsageReport,
)
from .upstream_errors import upstream_error

__all__ = ["OpenAICompatProvider"]

_DONE = b"[DONE]"


class OpenAICompatProvider:
    def __init__(self, kind: str, api_base: str, api_key: str | None, env_var: str) -> None:
        self.kind = kind
        self._url = api_base.rstrip("/") + "/chat/completions"
        self._models_url = api_base.rstrip("/") + "/models"
        self._env_var = env_var
        self._headers = {"content-type": "application/json"}
        if api_key:
            self._headers["authorization"] = f"Bearer {api_key}"
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            # No pool cap: forge's own limits bound concurrency; a cap here would queue streams silently.
            connector = aiohttp.TCPConnector(limit=0, keepalive_timeout=60)
            self._session = aiohttp.ClientSession(
                connector=connector, json_serialize=lambda o: orjson.dumps(o).decode()
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    def _body(self, upstream_model: str, params: ChatParams, stream: bool) -> bytes:
        body: dict[str, Any] = {
            "model": upstream_model,
            "messages": [m.to_openai() for m in params.messages],
            **params.sampling(),
        }
        if stream:
            body["stream"] = True
            body["stream_options"] = {"include_usage": True}
        return orjson.dumps(body)

    async def _post(self, body: bytes, timeout: float | None) -> aiohttp.ClientResponse:
        try:
            resp = await self._client().post(
                self._url,
                data=body,
                headers=self._headers,
                timeout=aiohttp.ClientTimeout(total=timeout, sock_connect=min(timeout or 10.0, 10.0)),
            )
        except TimeoutError as exc:  # first: aiohttp's timeouts are also ClientConnectionErrors
            raise DeadlineExceeded(f"provider {self.kind!r} did not answer in time") from exc
        except (aiohttp.ClientConnectionError, OSError) as exc:
            raise ProviderUnavailable(self.kind, f"cannot reach {self._url}: {exc}") from exc
        if resp.status != 200:
            try:
                body_bytes = await resp.read()
            finally:
                resp.release()
            raise upstream_error(self.kind, self._env_var, resp.status, body_bytes, resp.headers)
        return resp

    async def complete(self, upstream_model: str, params: ChatParams, timeout: float | None) -> Completion:
        resp = await self._post(self._body(upstream_model, params, stream=False), timeout)
        try:
            raw = await resp.read()
        except TimeoutError as exc:
            raise DeadlineExceeded(f"provider {self.kind!r} did not finish in time") from exc
        except aiohttp.ClientError as exc:
            raise ProviderProtocolError(self.kind, f"response cut: {exc}") from exc
        finally:
            resp.close()
        try:
            data = orjson.loads(raw)
            choice = data["choices"][0]
            message = choice.get("message") or {}
            usage = data.get("usage")
            return Completion(
                text=message.get("content") or "",
                finish=FinishReason.parse(choice.get("finish_reason")),
                tool_calls=[
                    ToolCall(c.get("id", ""), c["function"]["name"], c["function"].get("arguments", ""))
                    for c in message.get("tool_calls") or ()
                ],
                usage=UsageReport(usage["prompt_tokens"], usage["completion_tokens"]) if usage else None,
            )
        except (orjson.JSONDecodeError, KeyError, IndexError, TypeError) as exc:
            raise ProviderProtocolError(self.kind, f"unexpected completion body: {exc!r}") from exc

    async def stream(
        self, upstream_model: str, params: ChatParams, timeout: float | None
    ) -> AsyncIterator[ProviderEvent]:
        resp = await self._post(self._body(upstream_model, params, stream=True), timeout)
        finished_cleanly = False
        try:
            finish: FinishReason | None = None
            usage: UsageReport | None = None
            pending = b""
            done = False
            while not done:
                try:
                    data = await resp.content.readany()
                except TimeoutError as exc:
                    raise DeadlineExceeded(f"provider {self.kind!r} did not finish in time") from exc
                except aiohttp.ClientError as exc:
                    raise ProviderProtocolError(self.kind, f"stream cut: {exc}") from exc
                if not data:
                    break
                lines = (pending + data).split(b"\n")
                pending = lines.pop()
                texts: list[str] = []
                for line in lines:
                    if not line.startswith(b"data:"):
                        continue  # blank separators, comments, `event:` lines
                    payload = line[5:].strip()
                    if payload == _DONE:
                        done = True
                        break
                    try:
                        chunk = self._parse(payload)
                    except ForgeError:
                        if texts:  # what arrived intact before the bad event still reaches the caller
                            yield TextDelta("".join(texts), len(texts))
                        raise
                    if chunk.get("usage"):
                        u = chunk["usage"]
                        usage = UsageReport(u.get("prompt_tokens", 0), u.get("completion_tokens", 0))
                    for choice in chunk.get("choices") or ():
                        delta = choice.get("delta") or {}
                        content = delta.get("content")
                        if content:
                            texts.append(content)
                        calls = delta.get("tool_calls")
                        if calls:
                            if texts:
                                yield TextDelta("".join(texts), len(texts))
                                texts = []
                            for call in calls:
                                fn = call.get("function") or {}
                                yield ToolCallDelta(
                                    call.get("index", 0),
                                    call.get("id") or "",
                                    fn.get("name") or "",
                                    fn.get("arguments") or "",
                                )
                        if choice.get("finish_reason"):
                            finish = FinishReason.parse(choice["finish_reason"])
                if texts:
                    yield TextDelta("".join(texts), len(texts))
            if not done:
                raise ProviderProtocolError(self.kind, "the stream ended before [DONE]")
            finished_cleanly = await _drain(resp)
            if usage is not None:
                yield usage
            yield Finished(finish or FinishReason.STOP)
        finally:
            # An unfinished response must not go back to the pool: closing it is what tells the provider to
            # stop generating (and what the cancellation tests measure).
            if finished_cleanly:
                resp.release()
            else:
                resp.close()

    def _parse(self, payload: bytes) -> dict[str, Any]:
        try:
            chunk = orjson.loads(payload)
        except orjson.JSONDecodeError as exc:
            raise ProviderProtocolError(self.kind, f"malformed event {payload[:80]!r}") from exc
        if not isinstance(chunk, dict):
            raise ProviderProtocolError(self.kind, f"unexpected event {payload[:80]!r}")
        if "error" in chunk and not chunk.get("choices"):
            err = chunk["error"]
            message = err.get("message") if isinstance(err, dict) else str(err)
            raise ProviderUnavailable(self.kind, f"error in stream: {message}")
        return chunk

    async def reachable(self) -> bool:
        """Whether the API answers at all (any HTTP status below 500 counts: a 401 still proves it is up)."""
        try:
            async with self._client().get(
                self._models_url, headers=self._headers, timeout=aiohttp.ClientTimeout(total=2)
            ) as resp:
                return resp.status < 500
        except (aiohttp.ClientError, OSError, TimeoutError):
            return False

    async def list_upstream_models(self) -> list[str]:
        """Model ids the provider lists at /models (used to expand wildcard deployments)."""
        try:
            async with self._client().get(
                self._models_url, headers=self._headers, timeout=aiohttp.ClientTimeout(total=5)
            ) as resp:
                if resp.status != 200:
                    return []
                data = orjson.loads(await resp.read())
        except (aiohttp.ClientError, OSError, TimeoutError, orjson.JSONDecodeError):
            return []
        return [str(m["id"]) for m in data.get("data", ()) if isinstance(m, dict) and "id" in m]


async def _drain(resp: aiohttp.ClientResponse) -> bool:
    """Reads the rest of the body after `[DONE]` (the chunked terminator usually follows in its own packet), so
    the connection can go back to the pool instead of being closed; a stream that will not end is closed."""
    try:
        async with asyncio.timeout(1.0):
            while await resp.content.readany():
                pass
    except (TimeoutError, aiohttp.ClientError):
        return False
    return True
