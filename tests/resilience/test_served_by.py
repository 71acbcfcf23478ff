"""Every answer says which deployment served it and in how many attempts: on ChatResult and ChatStream (the
engine, built by the production builder against the fake upstream), as gRPC initial and trailing metadata, and as
HTTP headers on the edge — streamed answers included, whose headers leave with their first byte."""

from __future__ import annotations

import aiohttp
import grpc
import pytest
from forge.chat.v1 import chat_pb2, chat_pb2_grpc

from forge_rpc.adapters.accounting import PriceTable
from forge_rpc.domain import ChatMessage, ChatParams, TextDelta
from forge_rpc.server.compose_engine import build_engine
from forge_rpc.server.config import DeploymentConfig, RouterConfig
from forge_rpc.testing import running_forge
from tests.fakes import FakeUpstream
from tests.resilience.conftest import ask, at_fake, group_config

ROUTER = RouterConfig(routing_strategy="latency-based-routing", num_retries=2, fallbacks={"duo": ("spare",)})


def deployments(fake: FakeUpstream) -> list[DeploymentConfig]:
    return [
        at_fake(fake, "duo", "gpt-fake", tokens=3, fail=503, fail_times=1, tag="first"),
        at_fake(fake, "duo", "gpt-fake", tokens=3, fail=502, tag="second"),
        at_fake(fake, "spare", "gpt-fake", tokens=3, tag="spare"),
    ]


def hello(model: str) -> ChatParams:
    return ChatParams(model=model, messages=[ChatMessage("user", "hello")])


async def test_chat_result_and_stream_name_the_deployment_and_the_attempts(fake: FakeUpstream) -> None:
    await fake.reset()
    directory, engine = build_engine(group_config(fake, deployments(fake), ROUTER), PriceTable(), None)
    try:
        # first (503) → second (502, untried) → first again (its one failure is over): three attempts.
        result = await engine.complete(hello("duo"), 10.0)
        assert (result.deployment_id, result.attempts, result.completion.text) == ("duo-0", 3, "tok0 tok1 tok2 ")
        assert result.upstream_ms > 0

        # Lowest latency tries the deployment it has never seen answer first: second (502), then first.
        stream = await engine.open_stream(hello("duo"), 10.0)
        assert (stream.deployment_id, stream.attempts) == ("duo-0", 2)
        texts = [e.text async for e in stream.events() if isinstance(e, TextDelta)]
        assert "".join(texts) == "tok0 tok1 tok2 "

        direct = await engine.complete(hello("spare"), 10.0)
        assert (direct.deployment_id, direct.attempts) == ("spare-0", 1)
        assert engine.failover.load.in_flight("duo-0") == engine.failover.load.in_flight("duo-1") == 0
    finally:
        await directory.close()


async def test_passive_health_hears_every_attempt(fake: FakeUpstream) -> None:
    await fake.reset()
    heard: list[tuple[str, bool]] = []
    directory, engine = build_engine(group_config(fake, deployments(fake), ROUTER), PriceTable(), None)
    engine.observer = lambda provider_id, ok, latency_ms: heard.append((provider_id, ok and latency_ms > 0))
    try:
        stream = await engine.open_stream(hello("duo"), 10.0)
        assert heard == [("openai-1", False), ("openai-1", False)]  # reported as each attempt fails
        async for _ in stream.events():
            pass
        assert heard[-1] == ("openai-1", True)  # a stream reports its success when it has finished
    finally:
        await directory.close()


async def served_metadata(fake: FakeUpstream, stream: bool) -> tuple[dict[str, str], dict[str, str]]:
    """(initial, trailing) metadata of one chat call to a fresh forge over the `duo` group."""
    await fake.reset()
    async with (
        running_forge(group_config(fake, deployments(fake), ROUTER), http=False) as app,
        grpc.aio.insecure_channel(f"127.0.0.1:{app.grpc_port}") as channel,
    ):
        stub = chat_pb2_grpc.ChatServiceStub(channel)
        if stream:
            call = stub.StreamChatCompletion(chat_pb2.StreamChatCompletionRequest(chat=ask("duo")))
            async for _ in call:
                pass
            initial, trailing = await call.initial_metadata(), await call.trailing_metadata()
        else:
            unary = stub.CreateChatCompletion(chat_pb2.CreateChatCompletionRequest(chat=ask("duo")))
            await unary
            initial, trailing = await unary.initial_metadata(), await unary.trailing_metadata()
    return {k: str(v) for k, v in initial or ()}, {k: str(v) for k, v in trailing or ()}


@pytest.mark.parametrize("stream", [False, True])
async def test_trailing_metadata_names_the_deployment_and_the_attempts(fake: FakeUpstream, stream: bool) -> None:
    _, trailing = await served_metadata(fake, stream)
    assert (trailing["x-forge-deployment"], trailing["x-forge-attempts"]) == ("duo-0", "3")


async def test_a_stream_names_its_deployment_before_its_first_message(fake: FakeUpstream) -> None:
    # Initial metadata is what the edge turns into HTTP headers ahead of the first SSE byte.
    initial, _ = await served_metadata(fake, stream=True)
    assert (initial["x-forge-deployment"], initial["x-forge-attempts"]) == ("duo-0", "3")


@pytest.mark.parametrize("split", [False, True], ids=["local", "split"])
@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v1/chat/completions", {"model": "duo", "stream": True}),
        ("/v1/chat/completions", {"model": "duo"}),
        ("/api/v1/chat/completions:stream", {"model": "duo"}),
    ],
    ids=["openai-sse", "openai-unary", "rest-ndjson"],
)
async def test_http_answers_name_the_deployment_in_their_headers(
    fake: FakeUpstream, split: bool, path: str, body: dict[str, object]
) -> None:
    await fake.reset()
    config = group_config(fake, deployments(fake), ROUTER)
    async with (
        running_forge(config, split=split) as app,
        aiohttp.ClientSession(base_url=f"http://127.0.0.1:{app.http_port}") as http,
        http.post(path, json={**body, "messages": [{"role": "user", "content": "hello"}]}) as resp,
    ):
        assert resp.status == 200, await resp.text()
        assert (resp.headers["x-forge-deployment"], resp.headers["x-forge-attempts"]) == ("duo-0", "3")
        assert b"tok2" in await resp.read()
