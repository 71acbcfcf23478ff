"""AnalyticsServicer called directly with a fake context, and once through a real grpc.aio server."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from forge.analytics.v1 import analytics_pb2 as pb
from forge.analytics.v1 import analytics_pb2_grpc

from forge_rpc.adapters.store.analytics_queries import AnalyticsQueries
from forge_rpc.adapters.store.ledger import UsageLedger
from forge_rpc.domain import ErrorCode, ForgeError
from forge_rpc.server.methods import build_method_table, grpc_handlers
from forge_rpc.server.services import PLANNED_IN, SERVICES
from forge_rpc.services.analytics import AnalyticsConfig, AnalyticsServicer

from .conftest import FakeContext, Pool
from .dataset import NOW, load

ctx = FakeContext()


class Prices:
    def cost(self, model: str, prompt_tokens: int, completion_tokens: int) -> float:
        return prompt_tokens * 0.001 + completion_tokens * 0.002


@pytest.fixture
async def servicer(pool: Pool) -> AsyncIterator[AnalyticsServicer]:
    await load(pool)
    ledger = UsageLedger(pool)
    config = AnalyticsConfig(default_token_quota=1000, token_quotas={"vip": 5000}, watch_interval_s=0.02)
    yield AnalyticsServicer(
        ledger, AnalyticsQueries(pool, now=lambda: NOW), Prices(), started_at=time.time() - 10, config=config
    )
    await ledger.close()


def invalid(exc: pytest.ExceptionInfo[ForgeError], field: str) -> bool:
    return exc.value.code == ErrorCode.INVALID_ARGUMENT and field in [v.field for v in exc.value.violations]


async def test_record_usage_answers_quota_and_is_idempotent(servicer: AnalyticsServicer) -> None:
    req = pb.RecordUsageRequest(user_id="carol", model="m", tokens_used=100, request_id="ext-1", request_type="chat")
    first = await servicer.RecordUsage(req, ctx)
    assert (first.recorded, first.usage_id, first.quota_remaining, first.quota_limit) == (True, "ext-1", 900, 1000)
    assert first.cost_usd == pytest.approx(0.1)
    again = await servicer.RecordUsage(req, ctx)
    assert (again.recorded, again.quota_remaining) == (True, 900)  # a retried id is not counted twice
    split = pb.RecordUsageRequest(user_id="carol", model="m", prompt_tokens=10, completion_tokens=5, cost_usd=0)
    resp = await servicer.RecordUsage(split, ctx)
    assert (resp.quota_remaining, resp.cost_usd, len(resp.usage_id)) == (885, 0.0, 32)
    vip = await servicer.RecordUsage(pb.RecordUsageRequest(user_id="vip", model="m", tokens_used=1), ctx)
    assert (vip.quota_remaining, vip.quota_limit) == (4999, 5000)
    nobody = await servicer.RecordUsage(pb.RecordUsageRequest(model="m", tokens_used=1), ctx)
    assert (nobody.quota_remaining, nobody.quota_limit) == (-1, -1)  # no caller without auth, so no quota
    logs = await servicer.ListRequestLogs(pb.ListRequestLogsRequest(model="m", sort="timestamp"), ctx)
    assert (logs.logs[0].request_type, logs.logs[0].provider) == ("external", "external")


async def test_record_usage_rejects_bad_input(servicer: AnalyticsServicer) -> None:
    with pytest.raises(ForgeError) as exc:
        await servicer.RecordUsage(pb.RecordUsageRequest(tokens_used=-1), ctx)
    assert invalid(exc, "model") and invalid(exc, "tokens_used")


async def test_user_usage(servicer: AnalyticsServicer) -> None:
    u = await servicer.GetUserUsage(
        pb.GetUserUsageRequest(user_id="alice", start_date="2027-01-14", end_date="2027-01-15"), ctx
    )
    assert (u.user_id, u.total_requests, u.total_tokens, u.total_cost_usd) == ("alice", 3, 140, 1.75)
    assert u.model_breakdown["gpt-a"] == pb.ModelUsage(
        tokens=40, requests=2, cost_estimate=0.75, prompt_tokens=15, completion_tokens=25
    )
    assert u.period.end.ToJsonString() == "2027-01-15T23:59:59.999999Z"  # a bare end date includes its day
    assert u.quota_remaining == 1000  # this month (real time) alice has used nothing
    with pytest.raises(ForgeError) as exc:
        await servicer.GetUserUsage(pb.GetUserUsageRequest(user_id="alice", start_date="yesterday"), ctx)
    assert invalid(exc, "start_date")
    with pytest.raises(ForgeError) as exc:
        await servicer.GetUserUsage(pb.GetUserUsageRequest(user_id="me"), ctx)
    assert invalid(exc, "user_id")


async def test_current_stats_and_history(servicer: AnalyticsServicer) -> None:
    s = await servicer.GetCurrentStats(pb.GetCurrentStatsRequest(), ctx)
    assert (s.total_requests, s.total_tokens, s.total_errors, s.avg_latency_ms, s.total_cost_usd) == (
        4, 150, 1, 162.5, 1.75
    )  # fmt: skip
    assert list(s.models_in_use) == ["gpt-a", "gpt-b"]
    h = await servicer.GetStatsHistory(pb.GetStatsHistoryRequest(hours=1), ctx)
    assert (h.bucket_sec, len(h.metrics)) == (300, 12)
    b = h.metrics[10]
    assert (b.requests, b.tokens, b.requests_per_minute, b.error_rate, b.avg_latency_ms) == (2, 40, 0.4, 0.5, 200.0)
    assert b.tokens_per_second == pytest.approx(25 / 300)
    assert (await servicer.GetStatsHistory(pb.GetStatsHistoryRequest(), ctx)).bucket_sec == 3600
    with pytest.raises(ForgeError) as exc:
        await servicer.GetStatsHistory(pb.GetStatsHistoryRequest(hours=721), ctx)
    assert invalid(exc, "hours")


async def test_request_logs_pages(servicer: AnalyticsServicer) -> None:
    first = await servicer.ListRequestLogs(pb.ListRequestLogsRequest(page_size=3), ctx)
    assert ([e.id for e in first.logs], first.total) == (["r1", "r2", "r3"], 4)
    assert [e.status for e in first.logs] == ["success", "error", "cancelled"]
    nxt = await servicer.ListRequestLogs(pb.ListRequestLogsRequest(page_size=3, page_token=first.next_page_token), ctx)
    assert ([e.id for e in nxt.logs], nxt.next_page_token) == (["r4"], "")
    seed = await servicer.ListRequestLogs(pb.ListRequestLogsRequest(limit=1, offset=1), ctx)
    assert ([e.id for e in seed.logs], seed.total) == (["r2"], 4)
    errors = await servicer.ListRequestLogs(pb.ListRequestLogsRequest(status="error"), ctx)
    assert ([e.id for e in errors.logs], errors.total, errors.logs[0].error_reason) == (
        ["r2"], 1, "PROVIDER_UNAVAILABLE"
    )  # fmt: skip
    for bad, field in (
        (pb.ListRequestLogsRequest(sort="-name"), "sort"),
        (pb.ListRequestLogsRequest(status="weird"), "status"),
        (pb.ListRequestLogsRequest(page_token="garbage!"), "page_token"),
    ):
        with pytest.raises(ForgeError) as exc:
            await servicer.ListRequestLogs(bad, ctx)
        assert invalid(exc, field)


async def test_model_stats_summary_and_clear(servicer: AnalyticsServicer) -> None:
    page = await servicer.ListModelStats(pb.ListModelStatsRequest(page_size=1), ctx)
    assert ([m.name for m in page.models], page.models[0].error_rate) == (["gpt-a"], 0.5)
    rest = await servicer.ListModelStats(pb.ListModelStatsRequest(page_size=1, page_token=page.next_page_token), ctx)
    assert ([m.name for m in rest.models], rest.next_page_token) == (["gpt-b"], "")
    d = await servicer.GetDataSummary(pb.GetDataSummaryRequest(), ctx)
    assert (d.total_requests, d.total_logs_entries, d.metric_points) == (4, 4, 0)
    assert (await servicer.ClearMetrics(pb.ClearMetricsRequest(), ctx)).metrics_deleted == 0
    cleared = await servicer.ClearLogs(pb.ClearLogsRequest(before=d.newest_timestamp), ctx)
    assert (cleared.success, cleared.logs_deleted) == (True, 3)
    assert (await servicer.ClearAllData(pb.ClearAllDataRequest(), ctx)).rows_deleted == 1


async def test_watch_metrics_streams_snapshots(servicer: AnalyticsServicer) -> None:
    stream: Any = servicer.WatchMetrics(pb.WatchMetricsRequest(), ctx)  # an async generator: has aclose()
    snaps = [await anext(stream) for _ in range(3)]
    await stream.aclose()
    assert [s.traffic.requests_per_minute for s in snaps] == [1.0] * 3  # r1 is in the last minute
    assert snaps[0].uptime_sec >= 10


async def test_through_a_real_grpc_server(servicer: AnalyticsServicer) -> None:
    service = SERVICES["forge.analytics.v1.AnalyticsService"]
    table = build_method_table({service: [servicer]}, PLANNED_IN)
    server = grpc.aio.server()
    server.add_generic_rpc_handlers(grpc_handlers(table))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub: Any = analytics_pb2_grpc.AnalyticsServiceStub(channel)
            logs = await stub.ListRequestLogs(pb.ListRequestLogsRequest(model="gpt-b"))
            assert [e.id for e in logs.logs] == ["r3", "r4"]
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await stub.ListRequestLogs(pb.ListRequestLogsRequest(sort="nope"))
            assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await stub.GetCacheStats(pb.GetCacheStatsRequest())
            assert err.value.code() == grpc.StatusCode.UNIMPLEMENTED
            call = stub.WatchMetrics(pb.WatchMetricsRequest(interval_ms=250))
            got = 0
            async for snap in call:
                assert snap.HasField("traffic")
                got += 1
                if got == 2:
                    call.cancel()
                    break
            assert got == 2
    finally:
        await server.stop(0)
