"""Helpers for the resilience tests: a settable clock, model groups at the fake upstream, and the breakers of a
running forge (reached through its resilience component, so tests can move their clock)."""

from __future__ import annotations

import dataclasses

import grpc
from forge.chat.v1 import chat_pb2, chat_pb2_grpc
from forge.routing.v1 import routing_pb2, routing_pb2_grpc

from forge_rpc.domain.breaker import CircuitBreakers
from forge_rpc.server.app import ForgeApp
from forge_rpc.server.config import DeploymentConfig, ForgeConfig, ProvidersConfig, RouterConfig
from forge_rpc.services.breakers import BreakerServicer
from tests.conftest import storage_config
from tests.fakes import FakeUpstream, fake_model


class FakeClock:
    """Wall-clock seconds that move only when a test says so."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def at_fake(fake: FakeUpstream, group: str, base: str, **options: object) -> DeploymentConfig:
    """A deployment of `group` at the fake upstream whose behaviour is `options` (see tests/fakes/scenario.py)."""
    return DeploymentConfig(group, f"openai/{fake_model(base, **options)}", api_base=fake.openai_base, api_key="sk-t")


def group_config(
    fake: FakeUpstream, deployments: list[DeploymentConfig], router: RouterConfig, redis_url: str | None = None
) -> ForgeConfig:
    storage = storage_config()
    if redis_url is not None:
        storage = dataclasses.replace(storage, redis_url=redis_url)
    return ForgeConfig(
        storage=storage,
        providers=ProvidersConfig(
            deployments=tuple(deployments),
            ollama_host=fake.base_url,
            discover_ollama=False,
            default_model=deployments[0].model_name,
            local_model=False,
        ),
        router=router,
    )


def breakers_of(app: ForgeApp) -> CircuitBreakers:
    for component in app.components:
        for servicer in component.servicers.get("forge.routing.v1.RoutingService", ()):
            if isinstance(servicer, BreakerServicer):
                return servicer.breakers
    raise AssertionError("no breaker servicer in this forge")


def ask(model: str, text: str = "hello there") -> chat_pb2.ChatRequest:
    return chat_pb2.ChatRequest(model=model, messages=[chat_pb2.Message(role="user", content=text)])


async def unary(channel: grpc.aio.Channel, chat: chat_pb2.ChatRequest) -> chat_pb2.ChatCompletion:
    stub = chat_pb2_grpc.ChatServiceStub(channel)
    return await stub.CreateChatCompletion(chat_pb2.CreateChatCompletionRequest(chat=chat))


async def streamed(channel: grpc.aio.Channel, chat: chat_pb2.ChatRequest) -> list[chat_pb2.ChatEvent]:
    stub = chat_pb2_grpc.ChatServiceStub(channel)
    return [e async for e in stub.StreamChatCompletion(chat_pb2.StreamChatCompletionRequest(chat=chat))]


async def breakers(channel: grpc.aio.Channel) -> dict[str, routing_pb2.CircuitBreaker]:
    stub = routing_pb2_grpc.RoutingServiceStub(channel)
    listed = await stub.ListCircuitBreakers(routing_pb2.ListCircuitBreakersRequest())
    return {b.name: b for b in listed.circuit_breakers}


async def models_seen(fake: FakeUpstream) -> list[str]:
    """The model string of every chat request the fake received, in order."""
    return [str(r["model"]) for r in await fake.requests() if r["path"] == "/v1/chat/completions"]
