"""The shared response cache in Redis: one hash per entry (`d` the encoded answer, `c` created, `h` hits) with
the entry's TTL, and one hash of lookup counts, so every replica serves, counts and clears the same cache.

A lookup is one script round trip (read, count the hit or miss). A Redis failure during a chat call is a miss
(logged), never a failed call: the cache is an optimization. The operator RPCs (stats, list, clear) do fail
with UNAVAILABLE then, since their answer would be wrong.
"""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator, Sequence

from redis.asyncio import Redis
from redis.exceptions import RedisError

from ...domain import ErrorCode, ForgeError
from ...domain.response_cache import CachedAnswer, CacheEntryInfo, CacheStats
from .cache_codec import decode_answer, encode_answer, model_of_key

__all__ = ["RedisCache"]

log = logging.getLogger("forge.cache")

# KEYS: entry, stats. Returns the encoded answer, or false.
_GET = """
local d = redis.call('HGET', KEYS[1], 'd')
if d then
  redis.call('HINCRBY', KEYS[1], 'h', 1)
  redis.call('HINCRBY', KEYS[2], 'hits', 1)
  return d
end
redis.call('HINCRBY', KEYS[2], 'misses', 1)
return false
"""

# KEYS: entry. ARGV: answer, created, ttl ms. Replaces the entry whole, hit count reset.
_PUT = """
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'd', ARGV[1], 'c', ARGV[2], 'h', 0)
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return 1
"""

# KEYS: entries. Returns per entry {created, hits, size, ttl ms} (size 0 once it expired).
_DESCRIBE = """
local out = {}
for i = 1, #KEYS do
  local f = redis.call('HMGET', KEYS[i], 'c', 'h')
  out[i] = {f[1] or '0', f[2] or '0', redis.call('HSTRLEN', KEYS[i], 'd'), redis.call('PTTL', KEYS[i])}
end
return out
"""

_GLOB_SPECIALS = re.compile(r"([*?\[\]\\])")
_SCAN_COUNT = 1000


def _unavailable(exc: RedisError) -> ForgeError:
    return ForgeError(f"the shared cache (Redis) is unavailable: {exc}", ErrorCode.UNAVAILABLE, "CACHE_UNAVAILABLE")


class RedisCache:
    def __init__(self, redis: Redis, prefix: str) -> None:
        self._redis = redis
        self._prefix = f"{prefix}cache:"
        self._stats_key = f"{prefix}cache-stats"
        self._get = redis.register_script(_GET)
        self._put = redis.register_script(_PUT)
        self._describe_script = redis.register_script(_DESCRIBE)

    @property
    def backend(self) -> str:
        return "redis"

    async def get(self, key: str) -> CachedAnswer | None:
        try:
            data = await self._get(keys=[self._prefix + key, self._stats_key])
        except RedisError:
            log.warning("cache lookup failed; answering without the cache", exc_info=True)
            return None
        return decode_answer(data) if data else None

    async def contains(self, key: str) -> bool:
        try:
            return bool(await self._redis.exists(self._prefix + key))
        except RedisError as exc:
            raise _unavailable(exc) from exc

    async def put(self, key: str, answer: CachedAnswer, ttl_s: float) -> None:
        args: list[bytes | str | int] = [encode_answer(answer), repr(answer.created_at), max(1, int(ttl_s * 1000))]
        try:
            await self._put(keys=[self._prefix + key], args=args)
        except RedisError:
            log.warning("storing a cache entry failed", exc_info=True)

    async def _keys(self, pattern: str) -> AsyncIterator[bytes | str]:
        match = _GLOB_SPECIALS.sub(r"\\\1", self._prefix) + pattern
        async for name in self._redis.scan_iter(match=match, count=_SCAN_COUNT):
            yield name

    async def _describe(self, names: list[bytes | str]) -> list[CacheEntryInfo]:
        out: list[CacheEntryInfo] = []
        cut = len(self._prefix)
        for start in range(0, len(names), _SCAN_COUNT):
            batch = names[start : start + _SCAN_COUNT]
            replies = await self._describe_script(keys=batch)
            for name, (created, hits, size, ttl_ms) in zip(batch, replies, strict=True):
                if int(ttl_ms) < 0 or not int(size):
                    continue  # expired between the scan and the read
                key = (name if isinstance(name, str) else name.decode())[cut:]
                info = CacheEntryInfo(key, int(ttl_ms) / 1000, int(size), model_of_key(key), int(hits), float(created))
                out.append(info)
        return out

    async def entries(self, pattern: str) -> Sequence[CacheEntryInfo]:
        try:
            names = list({n async for n in self._keys(pattern)})
            return sorted(await self._describe(names), key=lambda e: e.key)
        except RedisError as exc:
            raise _unavailable(exc) from exc

    async def stats(self) -> CacheStats:
        try:
            live = await self.entries("*")
            hits, misses = await self._redis.hmget(self._stats_key, "hits", "misses")
        except RedisError as exc:
            raise _unavailable(exc) from exc
        return CacheStats(
            backend=self.backend,
            hits=int(hits or 0),
            misses=int(misses or 0),
            keys=len(live),
            memory_bytes=sum(e.size_bytes + len(e.key) for e in live),
            ttl_average_s=sum(e.ttl_s for e in live) / len(live) if live else 0.0,
            evictions=0,  # Redis evicts by its own maxmemory policy; its INFO counts them server-wide
        )

    async def clear(self, pattern: str) -> int:
        cleared = 0
        try:
            batch: list[bytes | str] = []
            async for name in self._keys(pattern):
                batch.append(name)
                if len(batch) >= _SCAN_COUNT:
                    cleared += int(await self._redis.unlink(*batch))
                    batch.clear()
            if batch:
                cleared += int(await self._redis.unlink(*batch))
        except RedisError as exc:
            raise _unavailable(exc) from exc
        return cleared
