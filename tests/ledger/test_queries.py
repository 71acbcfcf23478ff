"""AnalyticsQueries over the known dataset: every number asserted exactly."""

from __future__ import annotations

from datetime import timedelta

import pytest

from forge_rpc.adapters.store.analytics_queries import AnalyticsQueries, LogFilter, ModelUsageRow
from forge_rpc.domain import ForgeError
from forge_rpc.domain.ledger import UsageStatus

from .conftest import Pool
from .dataset import NOW, NOW_DT, load


@pytest.fixture
async def q(pool: Pool) -> AnalyticsQueries:
    await load(pool)
    return AnalyticsQueries(pool, now=lambda: NOW)


async def test_totals(q: AnalyticsQueries) -> None:
    t = await q.totals()
    assert (t.requests, t.tokens, t.errors, t.avg_latency_ms, t.cost_usd) == (4, 150, 1, 162.5, 1.75)
    assert t.models_in_use == ["gpt-a", "gpt-b"]
    a = await q.totals("alice")
    assert (a.requests, a.tokens, a.errors, a.avg_latency_ms, a.cost_usd) == (3, 140, 1, 150.0, 1.75)
    assert a.models_in_use == ["gpt-a"]  # alice's gpt-b row is two hours old


async def test_user_usage(q: AnalyticsQueries) -> None:
    u = await q.user_usage("alice", NOW_DT - timedelta(days=1), NOW_DT, None)
    assert (u.requests, u.tokens, u.cost_usd) == (3, 140, 1.75)
    assert u.by_model == {
        "gpt-a": ModelUsageRow(requests=2, tokens=40, prompt_tokens=15, completion_tokens=25, cost_usd=0.75),
        "gpt-b": ModelUsageRow(requests=1, tokens=100, prompt_tokens=100, completion_tokens=0, cost_usd=1.0),
    }
    only = await q.user_usage("alice", NOW_DT - timedelta(hours=1), NOW_DT, "gpt-b")
    assert (only.requests, only.by_model) == (0, {})
    assert await q.tokens_used("alice", NOW_DT - timedelta(hours=1), NOW_DT) == 40


async def test_history(q: AnalyticsQueries) -> None:
    buckets = await q.history(1, 300)
    assert len(buckets) == 12
    assert buckets[0].start == NOW_DT - timedelta(seconds=3300)
    assert buckets[-1].start == NOW_DT  # the bucket holding now
    assert [b.requests for b in buckets] == [0] * 9 + [1, 2, 0]
    b = buckets[10]
    assert (b.requests, b.tokens, b.completion_tokens, b.errors, b.avg_latency_ms, b.cost_usd) == (
        2, 40, 25, 1, 200.0, 0.75
    )  # fmt: skip
    assert b.p95_latency_ms == pytest.approx(290.0)  # interpolated between 100 and 300
    assert [b.requests for b in await q.history(1, 300, model="gpt-b")] == [0] * 9 + [1, 0, 0]
    assert sum(b.requests for b in await q.history(3, 3600, user_id="alice")) == 3


async def test_logs_filters_sort_and_pages(q: AnalyticsQueries) -> None:
    entries, total = await q.logs(LogFilter(), "-timestamp", 100, 0)
    assert ([e.request_id for e in entries], total) == (["r1", "r2", "r3", "r4"], 4)
    first = entries[0]
    assert (first.client_ip, first.prompt_text, first.response_text, first.status) == (
        "10.0.0.1", "hi", "hello", UsageStatus.COMPLETED
    )  # fmt: skip
    failed, n = await q.logs(LogFilter(status=UsageStatus.FAILED), "-timestamp", 100, 0)
    assert ([e.request_id for e in failed], n, failed[0].error_reason) == (["r2"], 1, "PROVIDER_UNAVAILABLE")
    by_latency, _ = await q.logs(LogFilter(), "latency_ms", 100, 0)
    assert [e.request_id for e in by_latency] == ["r4", "r1", "r3", "r2"]
    page, n = await q.logs(LogFilter(model="gpt-b"), "-tokens_used", 1, 1)
    assert ([e.request_id for e in page], n) == (["r3"], 2)
    window, n = await q.logs(LogFilter(start=NOW_DT - timedelta(seconds=100), end=NOW_DT), "timestamp", 10, 0)
    assert ([e.request_id for e in window], n) == (["r2", "r1"], 2)


async def test_model_stats(q: AnalyticsQueries) -> None:
    rows, total = await q.model_stats(0, None, 100, 0)
    assert total == 2
    a, b = rows
    assert (a.model, a.requests, a.tokens, a.avg_latency_ms, a.avg_ttft_ms, a.error_rate) == (
        "gpt-a", 2, 40, 200.0, 60.0, 0.5
    )  # fmt: skip
    assert a.tokens_per_second == pytest.approx(25 * 1000 / 280)  # (20 + 5) tokens over (80 + 200) ms
    assert (a.last_used, a.provider, a.cost_usd) == (NOW_DT - timedelta(seconds=30), "openai", 0.75)
    assert (b.model, b.requests, b.tokens, b.avg_latency_ms, b.avg_ttft_ms, b.error_rate) == (
        "gpt-b", 2, 110, 125.0, 50.0, 0.0
    )  # fmt: skip
    assert (b.tokens_per_second, b.provider) == (60.0, "ollama")  # 9 tokens in 150 ms; the newest provider
    recent, total = await q.model_stats(1, None, 100, 0)
    assert ([r.requests for r in recent], total) == ([2, 1], 2)
    second, total = await q.model_stats(0, None, 1, 1)
    assert ([r.model for r in second], total) == (["gpt-b"], 2)
    past, total = await q.model_stats(0, None, 1, 5)
    assert (past, total) == ([], 2)


async def test_traffic_summary_and_clear(q: AnalyticsQueries) -> None:
    t = await q.traffic(60)
    assert (t.requests, t.completion_tokens, t.avg_latency_ms, t.error_rate) == (1, 20, 100.0, 0.0)
    s = await q.summary()
    assert (s.requests, s.oldest, s.newest) == (4, NOW_DT - timedelta(hours=2), NOW_DT - timedelta(seconds=30))
    assert s.database_size_mb > 1
    assert await q.clear_logs(NOW_DT - timedelta(hours=1)) == 1
    assert await q.clear_logs(None) == 3
    assert (await q.summary()).requests == 0


async def test_unbound_queries_fail_cleanly(pool: Pool) -> None:
    unbound = AnalyticsQueries(now=lambda: NOW)
    with pytest.raises(ForgeError) as exc:
        await unbound.totals()
    assert exc.value.reason == "STORAGE_NOT_READY"
    unbound.bind(pool)
    assert (await unbound.summary()).requests >= 0
