"""The live metrics snapshot (GetMetrics / WatchMetrics, /ws `metrics`) and GetSystemStats carry real figures:
calls in flight, provider health counts, host and process resources, the database."""

from __future__ import annotations

import os

import grpc
import pytest
from forge.analytics.v1 import analytics_pb2, analytics_pb2_grpc
from forge.chat.v1 import chat_pb2, chat_pb2_grpc

from forge_rpc.server.app import ForgeApp
from tests.fakes import FakeUpstream, fake_model
from tests.rpc.test_chat import request

pytestmark = pytest.mark.asyncio


async def test_snapshot_counts_streams_in_flight(
    forge: ForgeApp, channel: grpc.aio.Channel, fake: FakeUpstream
) -> None:
    analytics = analytics_pb2_grpc.AnalyticsServiceStub(channel)
    idle = await analytics.GetMetrics(analytics_pb2.GetMetricsRequest())
    assert idle.traffic.active_streams == 0
    assert idle.traffic.active_requests == 1  # this GetMetrics call itself

    chat = chat_pb2_grpc.ChatServiceStub(channel)
    call = chat.StreamChatCompletion(
        chat_pb2.StreamChatCompletionRequest(chat=request(fake_model("fake/gpt-fake", tokens=400, gap_ms=20)))
    )
    await call.read()  # the stream is being served now
    busy = await analytics.GetMetrics(analytics_pb2.GetMetricsRequest())
    assert busy.traffic.active_streams == 1
    assert busy.traffic.active_requests == 2
    current = await analytics.GetCurrentStats(analytics_pb2.GetCurrentStatsRequest())
    assert current.active_requests == 1  # the stream; the asking call is not counted
    call.cancel()

    # A Watch… subscription is a dashboard, not a request in flight.
    watch = analytics.WatchMetrics(analytics_pb2.WatchMetricsRequest(interval_ms=250))
    snap = await watch.read()
    assert isinstance(snap, analytics_pb2.MetricsSnapshot)
    assert snap.traffic.active_streams in (0, 1)  # the cancelled stream may still be unwinding
    for _ in range(40):  # snapshots come every 250 ms: the cancel lands within a few
        if snap.traffic.active_streams == 0:
            break
        snap = await watch.read()
        assert isinstance(snap, analytics_pb2.MetricsSnapshot)
    assert snap.traffic.active_streams == 0
    watch.cancel()


async def test_snapshot_has_services_and_host_resources(forge: ForgeApp, channel: grpc.aio.Channel) -> None:
    analytics = analytics_pb2_grpc.AnalyticsServiceStub(channel)
    snap = await analytics.GetMetrics(analytics_pb2.GetMetricsRequest())
    # Configured providers in tests/conftest.py: the fake (healthy), the database, and `down/*` (unreachable).
    assert snap.services.total >= 2
    assert snap.services.healthy >= 1
    assert snap.services.unhealthy >= 1
    assert snap.services.healthy + snap.services.unhealthy == snap.services.total
    assert snap.system.memory_total_mb > 0
    assert 0 < snap.system.memory_percent < 100
    assert 0 <= snap.system.disk_usage_percent <= 100


async def test_system_stats(forge: ForgeApp, channel: grpc.aio.Channel) -> None:
    analytics = analytics_pb2_grpc.AnalyticsServiceStub(channel)
    stats = await analytics.GetSystemStats(analytics_pb2.GetSystemStatsRequest())
    assert stats.process.pid == os.getpid()  # the test runs forge in process
    assert stats.process.rss_mb > 10
    assert stats.process.threads >= 1
    assert stats.process.open_fds > 0
    assert stats.cpu_count == (os.cpu_count() or 1)
    assert len(stats.load_average) == 3
    assert stats.database.startswith("PostgreSQL")
    assert stats.database_size_mb > 0
    assert stats.version == forge.config.version
    assert stats.redis_enabled is False
