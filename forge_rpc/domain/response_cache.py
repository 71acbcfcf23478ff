"""The response cache's vocabulary: which chat requests it may answer, their key, the stored answer, and the
port its backends (in process, Redis) implement.

Only deterministic requests are cached — temperature 0, or a seed — since for those a second identical request
asks for the same answer. The key is a hash of the normalized request (model, messages, every sampling
parameter, tools, response format, and the routing inputs `metadata` and `task_type`, which may pick another
route). It does **not** include the caller: a deterministic answer is a function of the request alone, so one
caller's answer is what any other caller would have got, and `WarmCache` (run by an operator) must fill the
cache for everyone. Requests still pass authentication, model allow-lists and rate limits before a lookup.
OpenAI's `user` field (an end-user tag for abuse monitoring) does not change the answer and is left out.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from .chat import ChatParams, FinishReason, ToolCall, ToolCallDelta

__all__ = [
    "CacheEntryInfo",
    "CacheStats",
    "CacheStore",
    "CachedAnswer",
    "ResponseCache",
    "cache_key",
    "cacheable",
]

Piece = str | ToolCallDelta


@dataclass(frozen=True, slots=True)
class CachedAnswer:
    """A finished generation, as streamed: a unary answer is its text then one delta per tool call, so either
    kind of call can be answered from either kind of entry."""

    model: str
    """The model that answered (the name the caller can use again)."""
    provider: str
    """Who generated it originally."""
    finish: FinishReason
    pieces: tuple[Piece, ...]
    prompt_tokens: int
    completion_tokens: int
    created_at: float
    """Epoch seconds when it was generated."""

    @property
    def text(self) -> str:
        return "".join(p for p in self.pieces if isinstance(p, str))

    @property
    def tool_calls(self) -> list[ToolCall]:
        """Tool-call deltas merged by index, as a unary answer carries them."""
        merged: dict[int, list[str]] = {}
        for p in self.pieces:
            if isinstance(p, ToolCallDelta):
                slot = merged.setdefault(p.index, ["", "", ""])
                slot[0] = slot[0] or p.id
                slot[1] = slot[1] or p.name
                slot[2] += p.arguments
        return [ToolCall(i, n, a) for i, n, a in (merged[k] for k in sorted(merged))]


@dataclass(frozen=True, slots=True)
class CacheEntryInfo:
    key: str
    ttl_s: float
    size_bytes: int
    model: str
    hits: int
    created_at: float


@dataclass(frozen=True, slots=True)
class CacheStats:
    backend: str
    hits: int
    misses: int
    keys: int
    memory_bytes: int
    ttl_average_s: float
    evictions: int

    @property
    def hit_rate(self) -> float:
        lookups = self.hits + self.misses
        return self.hits / lookups if lookups else 0.0


class CacheStore(Protocol):
    """Where answers live; keys are the cache's own (`chat:<model>:<sha256>`), patterns are globs."""

    @property
    def backend(self) -> str:
        """ "memory" or "redis"."""
        ...

    async def get(self, key: str) -> CachedAnswer | None:
        """The live entry, counted as a hit (on the entry and in the stats), or None counted as a miss."""
        ...

    async def contains(self, key: str) -> bool:
        """Whether a live entry exists, without counting a lookup."""
        ...

    async def put(self, key: str, answer: CachedAnswer, ttl_s: float) -> None: ...

    async def stats(self) -> CacheStats: ...

    async def entries(self, pattern: str) -> Sequence[CacheEntryInfo]:
        """Live entries whose key matches, sorted by key."""
        ...

    async def clear(self, pattern: str) -> int:
        """Removes the matching entries; returns how many."""
        ...


def cacheable(params: ChatParams) -> bool:
    return params.temperature == 0 or params.seed is not None


def cache_key(params: ChatParams) -> str:
    normalized = [
        params.model,
        [
            [m.role, m.content, m.name, [[c.id, c.name, c.arguments] for c in m.tool_calls], m.tool_call_id]
            for m in params.messages
        ],
        params.temperature,
        params.top_p,
        params.max_tokens,
        params.stop,
        params.seed,
        params.tools,
        params.tool_choice,
        params.response_format,
        params.presence_penalty,
        params.frequency_penalty,
        params.metadata,
        params.task_type,
    ]
    body = json.dumps(normalized, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return f"chat:{params.model or 'default'}:{hashlib.sha256(body.encode()).hexdigest()}"


class ResponseCache:
    """The cache as servicers use it: on or off, the default TTL, and the store the composition root picks at
    start (Redis when configured, else in process). Until a store is set, nothing is cached."""

    def __init__(self, enabled: bool, ttl_s: float) -> None:
        self.enabled = enabled
        self.ttl_s = ttl_s
        self.store: CacheStore | None = None

    def key_for(self, params: ChatParams) -> str | None:
        """The key when this request may be answered from (and stored in) the cache, else None."""
        if not self.enabled or self.store is None or not cacheable(params):
            return None
        return cache_key(params)

    async def get(self, key: str) -> CachedAnswer | None:
        return None if self.store is None else await self.store.get(key)

    async def put(self, key: str, answer: CachedAnswer, ttl_s: float | None = None) -> None:
        if self.store is not None and answer.finish in _STORED:
            await self.store.put(key, answer, self.ttl_s if ttl_s is None else ttl_s)


# A generation that failed or was cut short is not an answer to replay.
_STORED = frozenset({FinishReason.STOP, FinishReason.LENGTH, FinishReason.TOOL_CALLS, FinishReason.CONTENT_FILTER})
