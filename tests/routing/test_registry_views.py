"""The registry views with live health: services (seed 003), providers and their health with latency (seed
000), detailed health (seed 004) — active probes overlaid with passive health from real traffic."""

from __future__ import annotations

from typing import TYPE_CHECKING

import aiohttp
import grpc
import pytest
from forge.chat.v1 import chat_pb2, chat_pb2_grpc
from forge.routing.v1 import routing_pb2, routing_pb2_grpc

from forge_rpc.server.app import ForgeApp
from tests.fakes import FakeUpstream, fake_model
from tests.routing.conftest import BADKEY, DOWN, FAKE
from tests.rpc.test_chat import request

if TYPE_CHECKING:
    Stub = routing_pb2_grpc.RoutingServiceAsyncStub

pytestmark = pytest.mark.asyncio


async def service(stub: Stub, name: str) -> routing_pb2.Service:
    return await stub.GetService(routing_pb2.GetServiceRequest(service_name=name))


async def test_services_with_live_health(routing: Stub, fake: FakeUpstream) -> None:
    listed = await routing.ListServices(routing_pb2.ListServicesRequest())
    assert set(listed.services) == {FAKE, BADKEY, DOWN, "ollama"}
    assert (listed.total, listed.enabled, listed.healthy) == (4, 4, 3)  # nothing listens behind `down/*`
    fake_service = listed.services[FAKE]
    assert (fake_service.provider, fake_service.status, fake_service.circuit_breaker) == ("openai", "healthy", "closed")
    assert fake_service.info.type == "openai" and fake_service.info.base_url == fake.openai_base
    assert fake_service.info.model == "fake" and list(fake_service.info.models) == ["fake", "fake/*"]
    assert fake_service.key_configured and fake_service.latency_ms > 0 and fake_service.last_checked.seconds > 0
    down = listed.services[DOWN]
    assert (down.healthy, down.status, down.error) == (False, "unhealthy", "not reachable")
    assert listed.services["ollama"].info.type == "ollama"
    assert await service(routing, FAKE) == fake_service
    page = await routing.ListServices(routing_pb2.ListServicesRequest(page_size=3))
    assert len(page.services) == 3 and page.next_page_token and page.total == 4
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await service(routing, "nowhere")
    assert err.value.code() == grpc.StatusCode.NOT_FOUND


async def test_provider_health_and_providers(routing: Stub, fake: FakeUpstream) -> None:
    checked = await routing.CheckProviderHealth(routing_pb2.CheckProviderHealthRequest())
    assert checked.status == "degraded" and checked.took_ms > 0
    assert checked.providers[FAKE].ok and checked.providers[FAKE].latency_ms > 0
    assert checked.providers[FAKE].url == fake.openai_base
    assert not checked.providers[DOWN].ok
    only = await routing.CheckProviderHealth(routing_pb2.CheckProviderHealthRequest(services=[FAKE, "ollama"]))
    assert (only.status, set(only.providers)) == ("ok", {FAKE, "ollama"})
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await routing.CheckProviderHealth(routing_pb2.CheckProviderHealthRequest(services=["nowhere"]))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT

    providers = await routing.ListProviders(routing_pb2.ListProvidersRequest())
    openai = providers.providers["openai"]
    assert openai.configured and openai.ok  # up: its best service answers
    assert sorted(openai.services) == sorted([FAKE, BADKEY, DOWN])
    assert {"fake", "badkey/*"} <= set(openai.models)
    assert providers.providers["ollama"].configured  # found running at OLLAMA_HOST
    assert not providers.providers["gemini"].configured
    assert (providers.total_configured, providers.total_available) == (2, 2)


async def test_seed_rest_shapes(http: aiohttp.ClientSession) -> None:
    async with http.get("/api/services/") as resp:
        assert resp.status == 200
        services = await resp.json()
    assert (services["total"], services["enabled"], services["healthy"]) == (4, 4, 3)
    assert services["services"][FAKE]["enabled"] is True and services["services"][FAKE]["healthy"] is True
    assert services["services"][FAKE]["info"]["type"] == "openai"
    async with http.get(f"/api/services/{FAKE}/") as resp:
        assert resp.status == 200
        assert (await resp.json())["name"] == FAKE
    async with http.get("/api/services/nowhere/") as resp:
        assert resp.status == 404
    async with http.get("/providers/health") as resp:
        assert resp.status == 200
        health = await resp.json()
    assert health["status"] == "degraded" and health["providers"][FAKE]["ok"] is True
    async with http.get("/v1/providers") as resp:
        assert resp.status == 200
        providers = await resp.json()
    assert providers["providers"]["openai"]["configured"] is True and "total_available" in providers
    async with http.get("/api/v1/health/detailed") as resp:
        assert resp.status == 200
        detailed = await resp.json()
    assert detailed["services"]["postgresql"]["status"] == "healthy"
    assert {"overall_status", "performance_metrics", "system_resources", "alerts", "recommendations"} <= set(detailed)


async def test_detailed_health(routing: Stub, routed: ForgeApp) -> None:
    await routing.ExecuteTask(routing_pb2.ExecuteTaskRequest(prompt="hi", model="fake/gpt-4o-mini"))
    assert routed.ledger is not None
    await routed.ledger.flush()  # the figures come from the usage ledger
    health = await routing.GetDetailedHealth(routing_pb2.GetDetailedHealthRequest())
    assert health.overall_status == "degraded"  # `down/*` is unreachable
    pg = health.services["postgresql"]
    assert pg.status == "healthy" and pg.connections >= 1 and pg.latency_ms > 0
    assert health.services[FAKE].status == "healthy" and health.services[FAKE].model == "fake"
    assert health.services[FAKE].circuit_breaker == "closed"
    assert health.services[DOWN].status == "unhealthy"
    assert any(DOWN in a for a in health.alerts)
    assert any("127.0.0.1:9" in r for r in health.recommendations)
    assert health.performance_metrics.requests_per_second > 0
    assert health.performance_metrics.avg_response_time_ms > 0
    assert health.system_resources.memory_total_mb > 0
    assert health.version and health.uptime_sec > 0


async def test_passive_health_follows_real_traffic(routing: Stub, routed: ForgeApp) -> None:
    """The fake's probe endpoint keeps answering, but requests fail: the service turns unhealthy from the
    traffic alone, and one successful request brings it back."""
    async with grpc.aio.insecure_channel(f"127.0.0.1:{routed.grpc_port}") as ch:
        chat = chat_pb2_grpc.ChatServiceStub(ch)
        for i in range(3):
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await chat.CreateChatCompletion(
                    chat_pb2.CreateChatCompletionRequest(chat=request(fake_model(f"fake/gpt-{i}", fail=503)))
                )
            assert err.value.code() == grpc.StatusCode.UNAVAILABLE
        failing = await service(routing, FAKE)
        assert (failing.healthy, failing.status) == (False, "unhealthy")
        assert "3 requests in a row failed" in failing.error
        assert (await service(routing, BADKEY)).healthy  # another service of the same provider is unaffected
        health = await routing.GetHealth(routing_pb2.GetHealthRequest())
        assert health.services[FAKE] == "unhealthy"

        # `fake` is another deployment on the same service (its own breaker, still closed): it answers.
        await chat.CreateChatCompletion(chat_pb2.CreateChatCompletionRequest(chat=request("fake")))
        recovered = await service(routing, FAKE)
        assert (recovered.healthy, recovered.error) == (True, "")
