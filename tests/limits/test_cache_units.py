"""The cache's pure and in-process parts: what is cacheable and how it is keyed, the stored format, LRU and TTL
on an injected clock, and who may clear and warm."""

from __future__ import annotations

import dataclasses

import pytest
from forge.analytics.v1 import analytics_pb2 as apb

from forge_rpc.adapters.coordination.cache_codec import decode_answer, encode_answer, model_of_key
from forge_rpc.adapters.coordination.cache_memory import MemoryCache
from forge_rpc.domain import ChatMessage, ChatParams, FinishReason, ForgeError, ToolCall, ToolCallDelta
from forge_rpc.domain.identity import Principal, Role
from forge_rpc.domain.response_cache import CachedAnswer, ResponseCache, cache_key, cacheable
from forge_rpc.services.cache import CacheServicer
from forge_rpc.services.context import principal
from tests.limits.conftest import call_context

ANSWER = CachedAnswer(
    model="gpt-fake",
    provider="openai",
    finish=FinishReason.TOOL_CALLS,
    pieces=(
        "Let me look. ",
        ToolCallDelta(0, "call_1", "lookup", '{"q":'),
        ToolCallDelta(0, "", "", '"x"}'),
        ToolCallDelta(1, "call_2", "other", "{}"),
    ),
    prompt_tokens=11,
    completion_tokens=7,
    created_at=1_700_000_000.5,
)


def params(**kw: object) -> ChatParams:
    return ChatParams(model="m", messages=[ChatMessage("user", "hi")], **kw)  # type: ignore[arg-type]


def test_only_temperature_zero_or_a_seed_is_cacheable() -> None:
    assert cacheable(params(temperature=0.0)) and cacheable(params(temperature=1.2, seed=4))
    assert not cacheable(params()) and not cacheable(params(temperature=0.1))


def test_the_key_covers_what_changes_the_answer_and_nothing_else() -> None:
    base = params(temperature=0.0)
    key = cache_key(base)
    assert key.startswith("chat:m:") and len(key) == len("chat:m:") + 64
    assert cache_key(dataclasses.replace(base, user="end-user-42")) == key  # OpenAI's `user` tag: same answer
    for change in (
        {"max_tokens": 5},
        {"stop": ["x"]},
        {"metadata": {"team": "a"}},  # routing rules may pick another route by metadata
        {"task_type": "code"},
        {"tools": [{"type": "function", "function": {"name": "f"}}]},
        {"messages": [ChatMessage("user", "hi"), ChatMessage("assistant", "", tool_calls=(ToolCall("1", "f", ""),))]},
        {"model": ""},
    ):
        assert cache_key(dataclasses.replace(base, **change)) != key, change
    assert cache_key(dataclasses.replace(base, model="")).startswith("chat:default:")


def test_the_stored_format_round_trips_and_merges_tool_calls() -> None:
    decoded = decode_answer(encode_answer(ANSWER))
    assert decoded == ANSWER
    assert decoded.text == "Let me look. "
    assert decoded.tool_calls == [ToolCall("call_1", "lookup", '{"q":"x"}'), ToolCall("call_2", "other", "{}")]
    assert decode_answer(b'{"v": 99}') is None and decode_answer(b"not json") is None
    assert model_of_key("chat:llama3.2:1b:" + "0" * 64) == "llama3.2:1b"


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


async def test_memory_cache_evicts_the_least_recently_used() -> None:
    cache = MemoryCache(max_entries=2, clock=Clock())
    for key in ("chat:a:1", "chat:b:2"):
        await cache.put(key, ANSWER, 60)
    assert await cache.get("chat:a:1") is not None  # a is now the most recently used
    await cache.put("chat:c:3", ANSWER, 60)
    assert [e.key for e in await cache.entries("*")] == ["chat:a:1", "chat:c:3"]
    stats = await cache.stats()
    assert (stats.evictions, stats.keys, stats.hits, stats.misses) == (1, 2, 1, 0)
    assert await cache.get("chat:b:2") is None
    assert (await cache.stats()).hit_rate == 0.5


async def test_memory_cache_expires_entries_on_its_clock() -> None:
    clock = Clock()
    cache = MemoryCache(max_entries=10, clock=clock)
    await cache.put("chat:a:1", ANSWER, 5)
    clock.now += 4.9
    assert await cache.contains("chat:a:1")
    assert (await cache.entries("chat:a:*"))[0].ttl_s == pytest.approx(0.1)
    clock.now += 0.1
    assert not await cache.contains("chat:a:1")
    assert await cache.get("chat:a:1") is None
    assert (await cache.stats()).keys == 0


async def test_clear_by_glob() -> None:
    cache = MemoryCache(max_entries=10)
    for key in ("chat:gpt-4o:1", "chat:gpt-4o-mini:2", "chat:llama3:3"):
        await cache.put(key, ANSWER, 60)
    assert await cache.clear("chat:gpt-4o*") == 2
    assert [e.key for e in await cache.entries("*")] == ["chat:llama3:3"]


async def test_clearing_and_warming_need_the_admin_role() -> None:
    cache = ResponseCache(enabled=True, ttl_s=60)
    cache.store = MemoryCache(10)
    servicer = CacheServicer(cache, engine=None)  # type: ignore[arg-type]  # never reached: refused first
    principal.set(Principal("u1", Role.USER))
    ctx = call_context()
    for call in (
        servicer.ClearCache(apb.ClearCacheRequest(), ctx),
        servicer.WarmCache(apb.WarmCacheRequest(), ctx),
    ):
        with pytest.raises(ForgeError) as refused:
            await call
        assert refused.value.reason == "ADMIN_ONLY"
    stats = await servicer.GetCacheStats(apb.GetCacheStatsRequest(), ctx)  # reading is open to everyone
    assert stats.enabled and stats.backend == "memory"
