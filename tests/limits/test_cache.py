"""The response cache through the chat servicer, gRPC and the edge, on both backends: hits and misses, streamed
answers replayed as streams, ledger rows for hits, TTL expiry, stats, keys, clear by pattern, warm."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import aiohttp
import grpc
import orjson
import pytest
import pytest_asyncio
from forge.analytics.v1 import analytics_pb2 as apb
from forge.analytics.v1 import analytics_pb2_grpc
from forge.chat.v1 import chat_pb2, chat_pb2_grpc

from forge_rpc.server.config.limits import CacheConfig
from tests.fakes import FakeUpstream, fake_model
from tests.limits.cache_harness import CacheForge, cache_forge
from tests.limits.conftest import limited

pytestmark = pytest.mark.asyncio


@pytest_asyncio.fixture
async def cached(fake: FakeUpstream, backend: str | None) -> AsyncIterator[CacheForge]:
    await fake.reset()
    async with cache_forge(limited(fake, backend, cache=CacheConfig(enabled=True, ttl_s=60))) as forge:
        yield forge


@pytest_asyncio.fixture
async def channel(cached: CacheForge) -> AsyncIterator[grpc.aio.Channel]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{cached.grpc_port}") as ch:
        yield ch


def tagged(tokens: int = 4) -> tuple[str, str]:
    tag = uuid.uuid4().hex[:10]
    return fake_model("fake/gpt-fake", tokens=tokens, tag=tag), tag


def chat(model: str, **kw: object) -> chat_pb2.ChatRequest:
    return chat_pb2.ChatRequest(
        model=model,
        messages=[chat_pb2.Message(role="user", content="hello there world")],
        **kw,  # type: ignore[arg-type]
    )


def unary(model: str, **kw: object) -> chat_pb2.CreateChatCompletionRequest:
    return chat_pb2.CreateChatCompletionRequest(chat=chat(model, **kw))


def trailers(call: object) -> dict[str, str]:
    return {k: v for k, v in call or () if isinstance(v, str)}  # type: ignore[attr-defined]


async def test_a_deterministic_answer_is_served_from_the_cache(
    cached: CacheForge, channel: grpc.aio.Channel, fake: FakeUpstream
) -> None:
    stub = chat_pb2_grpc.ChatServiceStub(channel)
    model, tag = tagged()
    first = stub.CreateChatCompletion(unary(model, temperature=0.0), metadata=(("x-request-id", f"{tag}-1"),))
    miss = await first
    assert trailers(await first.trailing_metadata())["x-forge-cache"] == "miss"
    second = stub.CreateChatCompletion(unary(model, temperature=0.0), metadata=(("x-request-id", f"{tag}-2"),))
    hit = await second
    assert trailers(await second.trailing_metadata())["x-forge-cache"] == "hit"
    assert len(await fake.requests(tag=tag)) == 1
    assert hit.choices[0].message.content == miss.choices[0].message.content == "tok0 tok1 tok2 tok3 "
    assert (hit.provider, miss.provider) == ("cache", "openai")
    assert hit.model == miss.model
    assert (hit.usage.prompt_tokens, hit.usage.completion_tokens) == (3, 4)
    assert hit.usage.cost_usd == 0
    # The hit still writes its ledger row: the answer's tokens, from the cache, at no cost.
    (row,) = await cached.ledger_rows(f"{tag}-2")
    assert (row["status"], row["provider"], row["prompt_tokens"], row["completion_tokens"]) == (
        "completed",
        "cache",
        3,
        4,
    )
    assert row["cost_usd"] == 0


async def test_only_deterministic_requests_are_cached(channel: grpc.aio.Channel, fake: FakeUpstream) -> None:
    stub = chat_pb2_grpc.ChatServiceStub(channel)
    for kw, upstream_calls in (({}, 2), ({"temperature": 0.7}, 2), ({"temperature": 0.7, "seed": 7}, 1)):
        model, tag = tagged()
        replies = [await stub.CreateChatCompletion(unary(model, **kw)) for _ in range(2)]
        assert len(await fake.requests(tag=tag)) == upstream_calls, kw
        assert [r.provider for r in replies][-1] == ("cache" if upstream_calls == 1 else "openai")


async def test_a_streamed_answer_is_replayed_as_a_stream(channel: grpc.aio.Channel, fake: FakeUpstream) -> None:
    stub = chat_pb2_grpc.ChatServiceStub(channel)
    model, tag = tagged(tokens=6)
    request = chat_pb2.StreamChatCompletionRequest(chat=chat(model, temperature=0.0))
    live = [e async for e in stub.StreamChatCompletion(request)]
    replayed = [e async for e in stub.StreamChatCompletion(request)]
    assert len(await fake.requests(tag=tag)) == 1

    def deltas(events: list[chat_pb2.ChatEvent]) -> list[str]:
        return [e.delta.content for e in events if e.WhichOneof("event") == "delta"]

    assert deltas(replayed) == deltas(live) and "".join(deltas(live)) == "".join(f"tok{i} " for i in range(6))
    assert [e.WhichOneof("event") for e in replayed][-2:] == ["usage", "finish"]
    assert [e.sequence for e in replayed] == list(range(len(replayed)))
    assert replayed[0].delta.role == "assistant"
    assert replayed[-1].finish.provider == "cache"
    assert replayed[-1].finish.reason == live[-1].finish.reason == chat_pb2.FINISH_REASON_STOP
    assert replayed[-2].usage.completion_tokens == live[-2].usage.completion_tokens == 6
    # The same request asked unary is the same answer.
    reply = await stub.CreateChatCompletion(unary(model, temperature=0.0))
    assert (reply.provider, reply.choices[0].message.content) == ("cache", "".join(deltas(live)))


async def test_openai_sse_replay_through_the_edge(cached: CacheForge, fake: FakeUpstream) -> None:
    model, tag = tagged(tokens=5)
    body = {"model": model, "messages": [{"role": "user", "content": "hi"}], "stream": True, "seed": 3}

    def contents(raw: bytes) -> list[str]:
        chunks = [orjson.loads(line[6:]) for line in raw.split(b"\n\n") if line.startswith(b"data: {")]
        return [c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"]]

    async with aiohttp.ClientSession(base_url=f"http://127.0.0.1:{cached.http_port}") as http:
        runs = []
        for _ in range(2):
            async with http.post("/v1/chat/completions", json=body) as resp:
                assert resp.status == 200
                raw = await resp.read()
                assert raw.endswith(b"data: [DONE]\n\n")
                runs.append(contents(raw))
    assert runs[0] == runs[1] and "".join(runs[0]) == "tok0 tok1 tok2 tok3 tok4 "
    assert len(await fake.requests(tag=tag)) == 1


async def test_stats_keys_and_clear_by_pattern(cached: CacheForge, channel: grpc.aio.Channel) -> None:
    chat_stub = chat_pb2_grpc.ChatServiceStub(channel)
    stub = analytics_pb2_grpc.AnalyticsServiceStub(channel)
    await stub.ClearCache(apb.ClearCacheRequest())
    before = await stub.GetCacheStats(apb.GetCacheStatsRequest())
    for model in ("fake/gpt-fake", "fake/gpt-fake-2"):
        for _ in range(2):
            await chat_stub.CreateChatCompletion(unary(model, temperature=0.0))
    stats = await stub.GetCacheStats(apb.GetCacheStatsRequest())
    assert stats.enabled and stats.backend == ("redis" if cached.cache.store.backend == "redis" else "memory")  # type: ignore[union-attr]
    assert (stats.total_hits - before.total_hits, stats.total_misses - before.total_misses) == (2, 2)
    assert stats.keys_count == 2 and 0 < stats.hit_rate < 1
    assert stats.memory_used_mb > 0 and 0 < stats.ttl_average_seconds <= 60

    first = await stub.ListCacheKeys(apb.ListCacheKeysRequest(page_size=1))
    second = await stub.ListCacheKeys(apb.ListCacheKeysRequest(page_size=1, page_token=first.next_page_token))
    assert not second.next_page_token
    keys = [e.key for e in (*first.keys, *second.keys)]
    assert keys == sorted(keys)
    by_model = {e.model: e for e in (*first.keys, *second.keys)}
    assert set(by_model) == {"fake/gpt-fake", "fake/gpt-fake-2"}
    entry = by_model["fake/gpt-fake"]
    assert entry.key.startswith("chat:fake/gpt-fake:") and len(entry.key.rsplit(":", 1)[1]) == 64
    assert entry.hits == 1 and entry.size_bytes > 0 and 0 < entry.ttl_sec <= 60

    # Seed 004's path and body.
    async with (
        aiohttp.ClientSession(base_url=f"http://127.0.0.1:{cached.http_port}") as http,
        http.post("/api/v1/cache/clear", json={"pattern": "chat:fake/gpt-fake-2:*"}) as resp,
    ):
        assert resp.status == 200
        cleared = await resp.json()
    assert (cleared["success"], cleared["cleared"], cleared["pattern"]) == (True, 1, "chat:fake/gpt-fake-2:*")
    left = await stub.ListCacheKeys(apb.ListCacheKeysRequest(pattern="chat:*"))
    assert [e.key for e in left.keys] == [entry.key]


async def test_entries_expire_with_their_ttl(fake: FakeUpstream, backend: str | None) -> None:
    config = limited(fake, backend, cache=CacheConfig(enabled=True, ttl_s=0.3))
    async with (
        cache_forge(config) as forge,
        grpc.aio.insecure_channel(f"127.0.0.1:{forge.grpc_port}") as channel,
    ):
        stub = chat_pb2_grpc.ChatServiceStub(channel)
        stats = analytics_pb2_grpc.AnalyticsServiceStub(channel)
        model, tag = tagged()
        await stub.CreateChatCompletion(unary(model, temperature=0.0))
        assert (await stats.GetCacheStats(apb.GetCacheStatsRequest())).keys_count == 1
        for _ in range(200):  # the store's own clock decides; poll it
            if (await stats.GetCacheStats(apb.GetCacheStatsRequest())).keys_count == 0:
                break
            await asyncio.sleep(0.02)
        else:
            raise AssertionError("the entry never expired")
        reply = await stub.CreateChatCompletion(unary(model, temperature=0.0))
        assert reply.provider == "openai"
        assert len(await fake.requests(tag=tag)) == 2


async def test_warm_fills_the_cache_for_the_next_caller(channel: grpc.aio.Channel, fake: FakeUpstream) -> None:
    stub = analytics_pb2_grpc.AnalyticsServiceStub(channel)
    model, tag = tagged()
    request = apb.WarmCacheRequest(requests=[chat(model, temperature=0.0), chat(model)], ttl_sec=30)
    warmed = await stub.WarmCache(request)
    assert (warmed.warmed, warmed.skipped, warmed.already_cached, warmed.failed) == (1, 1, 0, 0)
    assert warmed.keys[0].startswith(f"chat:{model}:") and warmed.keys[1] == ""
    again = await stub.WarmCache(apb.WarmCacheRequest(requests=[chat(model, temperature=0.0)]))
    assert (again.warmed, again.already_cached, list(again.keys)) == (0, 1, [warmed.keys[0]])
    (entry,) = (await stub.ListCacheKeys(apb.ListCacheKeysRequest(pattern=warmed.keys[0]))).keys
    assert entry.ttl_sec <= 30
    reply = await chat_pb2_grpc.ChatServiceStub(channel).CreateChatCompletion(unary(model, temperature=0.0))
    assert reply.provider == "cache"
    assert len(await fake.requests(tag=tag)) == 1  # the warm-up's only


async def test_warm_reports_failures_and_keeps_the_rest(channel: grpc.aio.Channel) -> None:
    stub = analytics_pb2_grpc.AnalyticsServiceStub(channel)
    good, _ = tagged()
    request = apb.WarmCacheRequest(requests=[chat("nope/unknown", temperature=0.0), chat(good, temperature=0.0)])
    warmed = await stub.WarmCache(request)
    assert (warmed.warmed, warmed.failed, warmed.keys[0]) == (1, 1, "")
    with pytest.raises(grpc.aio.AioRpcError) as bad:
        await stub.WarmCache(apb.WarmCacheRequest())
    assert bad.value.code() == grpc.StatusCode.INVALID_ARGUMENT
