"""The in-process response cache: least-recently-used eviction beyond `max_entries`, and a TTL per entry.

Entries are kept encoded (the same bytes Redis would hold), so the memory figure in the stats is real and a
caller can never mutate a stored answer.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase

from ...domain.response_cache import CachedAnswer, CacheEntryInfo, CacheStats
from .cache_codec import decode_answer, encode_answer, model_of_key

__all__ = ["MemoryCache"]


@dataclass(slots=True)
class _Entry:
    data: bytes
    expires: float
    """On the monotonic clock."""
    created_at: float
    """Wall clock, for listings."""
    hits: int = 0


class MemoryCache:
    def __init__(
        self,
        max_entries: int,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self._max = max_entries
        self._clock = clock
        self._wall = wall
        self._entries: OrderedDict[str, _Entry] = OrderedDict()
        self._hits = self._misses = self._evictions = 0

    @property
    def backend(self) -> str:
        return "memory"

    def _live(self, key: str) -> _Entry | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        if entry.expires <= self._clock():
            del self._entries[key]
            return None
        return entry

    async def get(self, key: str) -> CachedAnswer | None:
        entry = self._live(key)
        answer = decode_answer(entry.data) if entry is not None else None
        if entry is None or answer is None:
            self._misses += 1
            return None
        self._entries.move_to_end(key)
        entry.hits += 1
        self._hits += 1
        return answer

    async def contains(self, key: str) -> bool:
        return self._live(key) is not None

    async def put(self, key: str, answer: CachedAnswer, ttl_s: float) -> None:
        self._entries[key] = _Entry(encode_answer(answer), self._clock() + ttl_s, self._wall())
        self._entries.move_to_end(key)
        while len(self._entries) > self._max:
            self._entries.popitem(last=False)
            self._evictions += 1

    def _purge(self) -> float:
        now = self._clock()
        for key in [k for k, e in self._entries.items() if e.expires <= now]:
            del self._entries[key]
        return now

    async def stats(self) -> CacheStats:
        now = self._purge()
        entries = self._entries
        ttl = sum(e.expires - now for e in entries.values()) / len(entries) if entries else 0.0
        return CacheStats(
            backend=self.backend,
            hits=self._hits,
            misses=self._misses,
            keys=len(entries),
            memory_bytes=sum(len(k) + len(e.data) for k, e in entries.items()),
            ttl_average_s=ttl,
            evictions=self._evictions,
        )

    async def entries(self, pattern: str) -> Sequence[CacheEntryInfo]:
        now = self._purge()
        return [
            CacheEntryInfo(key, e.expires - now, len(e.data), model_of_key(key), e.hits, e.created_at)
            for key, e in sorted(self._entries.items())
            if fnmatchcase(key, pattern)
        ]

    async def clear(self, pattern: str) -> int:
        self._purge()
        doomed = [k for k in self._entries if fnmatchcase(k, pattern)]
        for key in doomed:
            del self._entries[key]
        return len(doomed)
