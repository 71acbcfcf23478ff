"""The response cache's RPCs of AnalyticsService (seed 004's /api/v1/cache/*): stats, list keys, clear by glob,
warm. Clearing and warming are admin operations (warming runs — and pays for — generations); stats and keys are
open to every caller, as keys hold only a model name and a hash.
"""

from __future__ import annotations

import asyncio
import math

from forge.analytics.v1 import analytics_pb2 as pb
from forge.chat.v1 import chat_pb2

from ..domain import ChatEngine, FailedPrecondition, FieldViolation, ForgeError, InvalidArgument, PermissionDenied
from ..domain.ledger import Operation, UsageSink
from ..domain.response_cache import CacheStore, ResponseCache
from .chat_convert import chat_params, served_model
from .chat_replay import answer_of_result
from .context import CallContext, principal, request_id
from .paging import next_page_token, page_offset, page_size
from .timestamps import timestamp
from .usage_recording import Generation

__all__ = ["CacheServicer"]

MAX_WARM = 32
_WARM_CONCURRENCY = 4
MiB = 1024 * 1024


def _require_admin(what: str) -> None:
    if not principal.get().is_admin:
        raise PermissionDenied(f"{what} needs the admin role", "ADMIN_ONLY")


class CacheServicer:
    def __init__(self, cache: ResponseCache, engine: ChatEngine, ledger: UsageSink | None = None) -> None:
        self._cache = cache
        self._engine = engine
        self._ledger = ledger

    def _store(self) -> CacheStore | None:
        return self._cache.store

    async def GetCacheStats(self, request: pb.GetCacheStatsRequest, context: CallContext) -> pb.CacheStats:
        store = self._store()
        if store is None:
            return pb.CacheStats(enabled=self._cache.enabled)
        s = await store.stats()
        return pb.CacheStats(
            hit_rate=s.hit_rate,
            total_hits=s.hits,
            total_misses=s.misses,
            memory_used_mb=s.memory_bytes / MiB,
            keys_count=s.keys,
            ttl_average_seconds=s.ttl_average_s,
            backend=s.backend,
            evictions=s.evictions,
            enabled=self._cache.enabled,
        )

    async def ListCacheKeys(self, request: pb.ListCacheKeysRequest, context: CallContext) -> pb.ListCacheKeysResponse:
        size = page_size(request.page_size)
        offset = page_offset(request.page_token)
        store = self._store()
        entries = await store.entries(request.pattern or "*") if store is not None else []
        page = entries[offset : offset + size]
        return pb.ListCacheKeysResponse(
            keys=[
                pb.CacheEntry(
                    key=e.key,
                    ttl_sec=math.ceil(e.ttl_s),
                    size_bytes=e.size_bytes,
                    model=e.model,
                    hits=e.hits,
                    created_at=timestamp(e.created_at),
                )
                for e in page
            ],
            next_page_token=next_page_token(offset, len(page), len(entries)),
        )

    async def ClearCache(self, request: pb.ClearCacheRequest, context: CallContext) -> pb.ClearCacheResponse:
        _require_admin("clearing the cache")
        pattern = request.pattern or "*"
        store = self._store()
        cleared = await store.clear(pattern) if store is not None else 0
        return pb.ClearCacheResponse(
            success=True, cleared=cleared, pattern=pattern, message=f"cleared {cleared} entries matching {pattern!r}"
        )

    async def WarmCache(self, request: pb.WarmCacheRequest, context: CallContext) -> pb.WarmCacheResponse:
        _require_admin("warming the cache")
        violations = []
        if not request.requests:
            violations.append(FieldViolation("requests", "at least one request is required"))
        if len(request.requests) > MAX_WARM:
            violations.append(FieldViolation("requests", f"at most {MAX_WARM} requests per call"))
        if request.ttl_sec < 0:
            violations.append(FieldViolation("ttl_sec", "must not be negative"))
        if violations:
            raise InvalidArgument(violations)
        if not self._cache.enabled or self._store() is None:
            raise FailedPrecondition(
                "the response cache is off (limits.cache.enabled, FORGE_CACHE_ENABLED): there is nothing to warm",
                "CACHE_DISABLED",
            )
        ttl = float(request.ttl_sec) if request.ttl_sec else None
        rid = request_id.get()
        timeout = context.time_remaining()
        gate = asyncio.Semaphore(_WARM_CONCURRENCY)

        async def warm(i: int, chat: chat_pb2.ChatRequest) -> tuple[str, str]:
            # Its own task (gather): the generation's ledger row gets an id of its own.
            request_id.set(f"{rid}-warm-{i}")
            params = chat_params(chat)
            key = self._cache.key_for(params)
            if key is None:
                return "skipped", ""
            store = self._store()
            if store is not None and await store.contains(key):
                return "already_cached", key
            async with gate:
                try:
                    with Generation(self._ledger, Operation.CHAT, params.model, context) as gen:
                        result = await self._engine.complete(params, timeout)
                        gen.completed(served_model(result.route), result.provider, result.usage)
                except ForgeError:
                    return "failed", ""
            await self._cache.put(key, answer_of_result(result), ttl)
            return "warmed", key

        outcomes = await asyncio.gather(*(warm(i, c) for i, c in enumerate(request.requests)))
        counts = {k: sum(1 for o, _ in outcomes if o == k) for k in ("warmed", "already_cached", "skipped", "failed")}
        return pb.WarmCacheResponse(**counts, keys=[key for _, key in outcomes])
