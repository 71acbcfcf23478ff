"""GetHealth (the seeds' /health union) and WatchServiceStatus (the `service_status` stream)."""

from __future__ import annotations

import dataclasses

import grpc
import pytest
from forge.routing.v1 import routing_pb2, routing_pb2_grpc

from forge_rpc.server.config import DeploymentConfig, ForgeConfig, ProvidersConfig
from forge_rpc.testing import running_forge
from tests.conftest import forge_config, storage_config
from tests.fakes import FakeUpstream

pytestmark = pytest.mark.asyncio


def stub(channel: grpc.aio.Channel) -> routing_pb2_grpc.RoutingServiceAsyncStub:
    return routing_pb2_grpc.RoutingServiceStub(channel)


async def test_health_reports_every_dependency(channel: grpc.aio.Channel) -> None:
    health = await stub(channel).GetHealth(routing_pb2.GetHealthRequest())
    assert health.version
    assert health.uptime_sec >= 0
    assert health.timestamp.seconds > 0
    assert health.ollama_available
    assert health.ollama_running
    assert health.services["ollama"] == "healthy"
    assert health.services["database"] == "healthy"
    assert health.database_connected
    # forge_config includes a deployment whose upstream is down, so the system is degraded and says which.
    assert health.status == "degraded"
    assert "unavailable" in health.message


async def test_health_is_healthy_when_every_provider_answers(fake: FakeUpstream) -> None:
    config = ForgeConfig(
        storage=storage_config(),
        providers=ProvidersConfig(
            deployments=(DeploymentConfig("fake", "openai/gpt-fake", api_base=fake.openai_base, api_key="k"),),
            ollama_host=fake.base_url,
            local_model=False,
        ),
    )
    async with running_forge(config, http=False) as app, grpc.aio.insecure_channel(f"127.0.0.1:{app.grpc_port}") as ch:
        health = await stub(ch).GetHealth(routing_pb2.GetHealthRequest())
    assert health.status == "healthy"
    assert health.message == "All systems operational"


async def test_health_without_providers_is_degraded_and_says_why() -> None:
    config = ForgeConfig(
        storage=storage_config(),
        providers=ProvidersConfig(ollama_host="http://127.0.0.1:9", discover_ollama=True, local_model=False),
    )
    async with running_forge(config, http=False) as app, grpc.aio.insecure_channel(f"127.0.0.1:{app.grpc_port}") as ch:
        health = await stub(ch).GetHealth(routing_pb2.GetHealthRequest())
    assert health.status == "degraded"
    assert not health.ollama_available
    assert health.services["ollama"] == "disabled"  # discovered-only Ollama is optional, not a failure


async def test_watch_sends_initial_status_then_changes(fake: FakeUpstream) -> None:
    ollama = FakeUpstream()
    await ollama.start()
    config = dataclasses.replace(forge_config(fake), status_watch_interval_s=0.05)
    config = dataclasses.replace(config, providers=dataclasses.replace(config.providers, ollama_host=ollama.base_url))
    try:
        async with (
            running_forge(config, http=False) as app,
            grpc.aio.insecure_channel(f"127.0.0.1:{app.grpc_port}") as ch,
        ):
            call = stub(ch).WatchServiceStatus(routing_pb2.WatchServiceStatusRequest(services=["ollama"]))
            first = await call.read()
            assert isinstance(first, routing_pb2.ServiceStatusEvent)
            assert (first.initial, first.service, first.data.healthy) == (True, "ollama", True)
            await ollama.stop()  # Ollama goes away: the watcher hears about it
            change = await call.read()
            assert isinstance(change, routing_pb2.ServiceStatusEvent)
            assert (change.initial, change.service, change.data.healthy) == (False, "ollama", False)
            assert change.data.status == "disabled"  # discovered, not configured: optional
            assert "not running" in change.data.error
            assert change.sequence == 1
            call.cancel()
    finally:
        await ollama.stop()
