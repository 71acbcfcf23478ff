"""Provider embeddings over the OpenAI-compatible `POST /v1/embeddings` (OpenAI, vLLM, LM Studio, Ollama's
OpenAI endpoint, litellm's proxy…)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import aiohttp
import orjson

from ...domain import ProviderAuthError, ProviderProtocolError, ProviderRateLimited, ProviderUnavailable
from .protocol import Embeddings

__all__ = ["OpenAIEmbedder"]

# OpenAI's per-request input limit.
_MAX_INPUTS = 2048


def _unit(vector: list[float]) -> list[float]:
    norm = math.sqrt(sum(v * v for v in vector)) or 1.0
    return [v / norm for v in vector]


class OpenAIEmbedder:
    """One embeddings model behind an OpenAI-compatible base URL, named "<provider>/<model>"."""

    def __init__(
        self,
        provider: str,
        model: str,
        api_base: str,
        api_key: str | None = None,
        *,
        dimension: int = 0,
        env_var: str = "OPENAI_API_KEY",
        session: aiohttp.ClientSession | None = None,
        timeout_s: float = 60.0,
    ) -> None:
        """`dimension` 0 means learn it from the first response; `session` is shared when given (and then not
        closed by `close()`)."""
        self._provider = provider
        self._model = model
        self._url = api_base.rstrip("/") + "/embeddings"
        self._headers = {"content-type": "application/json"}
        if api_key:
            self._headers["authorization"] = f"Bearer {api_key}"
        self._dimension = dimension
        self._env_var = env_var
        self._session = session
        self._owns_session = session is None
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)

    @property
    def name(self) -> str:
        return f"{self._provider}/{self._model}"

    @property
    def dimension(self) -> int:
        return self._dimension

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
            self._owns_session = True
        return self._session

    async def close(self) -> None:
        if self._owns_session and self._session is not None:
            await self._session.close()

    async def _call(self, texts: Sequence[str]) -> tuple[list[list[float]], int]:
        body: dict[str, Any] = {"model": self._model, "input": list(texts), "encoding_format": "float"}
        if self._dimension:
            body["dimensions"] = self._dimension
        try:
            async with self._client().post(self._url, data=orjson.dumps(body), headers=self._headers) as resp:
                raw = await resp.read()
                status = resp.status
                retry_after = resp.headers.get("retry-after")
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise ProviderUnavailable(self._provider, f"{type(exc).__name__}: {exc}") from exc
        if status in (401, 403):
            raise ProviderAuthError(self._provider, self._env_var, f"HTTP {status}")
        if status == 429:
            raise ProviderRateLimited(self._provider, float(retry_after) if retry_after else None, "HTTP 429")
        if status >= 500:
            raise ProviderUnavailable(self._provider, f"HTTP {status}: {raw[:200]!r}")
        if status != 200:
            raise ProviderProtocolError(self._provider, f"embeddings answered HTTP {status}: {raw[:200]!r}")
        try:
            payload = orjson.loads(raw)
            rows = sorted(payload["data"], key=lambda row: int(row["index"]))
            vectors = [_unit([float(v) for v in row["embedding"]]) for row in rows]
            tokens = int((payload.get("usage") or {}).get("prompt_tokens", 0))
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise ProviderProtocolError(self._provider, f"unreadable embeddings response: {exc}") from exc
        if len(vectors) != len(texts):
            raise ProviderProtocolError(self._provider, f"{len(vectors)} embeddings for {len(texts)} inputs")
        return vectors, tokens

    async def embed_counted(self, texts: Sequence[str]) -> Embeddings:
        vectors: list[list[float]] = []
        tokens = 0
        for start in range(0, len(texts), _MAX_INPUTS):
            part, used = await self._call(texts[start : start + _MAX_INPUTS])
            vectors.extend(part)
            tokens += used
        if vectors and not self._dimension:
            self._dimension = len(vectors[0])
        return Embeddings(vectors, tokens)

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        return (await self.embed_counted(texts)).vectors
