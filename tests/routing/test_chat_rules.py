"""Routing rules route chat too: a chat that names no model (or `auto`) goes where the first matching rule sends
it — by task type and metadata — over gRPC (unary and stream) and the OpenAI edge, and says which rule in its
`x-forge-route-rule` metadata and header. A named model is never re-routed; `auto` with no matching rule is the
default model."""

from __future__ import annotations

from typing import TYPE_CHECKING

import aiohttp
import grpc
import pytest
from forge.chat.v1 import chat_pb2, chat_pb2_grpc
from forge.type.v1 import task_type_pb2

from forge_rpc.server.app import ForgeApp
from tests.routing.conftest import FAKE
from tests.routing.test_resolve_execute import rule

if TYPE_CHECKING:
    from forge.routing.v1 import routing_pb2_grpc

    Stub = routing_pb2_grpc.RoutingServiceAsyncStub

pytestmark = pytest.mark.asyncio

TT = task_type_pb2
HELLO = [chat_pb2.Message(role="user", content="hello")]


def ask(model: str = "", **fields: object) -> chat_pb2.ChatRequest:
    return chat_pb2.ChatRequest(model=model, messages=HELLO, **fields)  # type: ignore[arg-type]


async def test_task_type_and_metadata_route_a_chat(routing: Stub, routed: ForgeApp) -> None:
    code = await rule(routing, priority=5, task_type=TT.TASK_TYPE_CODE_GENERATION, service=FAKE, model="gpt-code")
    ml = await rule(routing, priority=1, match_metadata={"team": "ml"}, service=FAKE, model="gpt-ml")
    async with grpc.aio.insecure_channel(f"127.0.0.1:{routed.grpc_port}") as channel:
        chat = chat_pb2_grpc.ChatServiceStub(channel)

        unary = chat.CreateChatCompletion(
            chat_pb2.CreateChatCompletionRequest(chat=ask(task_type=TT.TASK_TYPE_CODE_GENERATION))
        )
        reply = await unary
        assert reply.model == "gpt-code"
        assert dict(await unary.trailing_metadata())["x-forge-route-rule"] == code.id

        stream = chat.StreamChatCompletion(
            chat_pb2.StreamChatCompletionRequest(
                chat=ask("auto", task_type=TT.TASK_TYPE_CODE_GENERATION, metadata={"team": "ml"})
            )
        )
        events = [e async for e in stream]
        assert events[-1].finish.model == "gpt-ml"  # the higher-priority rule wins
        assert dict(await stream.initial_metadata())["x-forge-route-rule"] == ml.id

        # A named model is the caller's choice; `auto` with no matching rule is the default model.
        named = await chat.CreateChatCompletion(
            chat_pb2.CreateChatCompletionRequest(chat=ask("fake/gpt-named", task_type=TT.TASK_TYPE_CODE_GENERATION))
        )
        assert named.model == "gpt-named"
        default = await chat.CreateChatCompletion(chat_pb2.CreateChatCompletionRequest(chat=ask()))
        plain = chat.CreateChatCompletion(chat_pb2.CreateChatCompletionRequest(chat=ask("auto")))
        assert (await plain).model == default.model
        assert "x-forge-route-rule" not in dict(await plain.trailing_metadata())


async def test_the_openai_edge_routes_auto_by_metadata(routing: Stub, http: aiohttp.ClientSession) -> None:
    ml = await rule(routing, match_metadata={"team": "ml"}, service=FAKE, model="gpt-ml")
    body = {"model": "auto", "messages": [{"role": "user", "content": "hi"}], "metadata": {"team": "ml"}}
    async with http.post("/v1/chat/completions", json=body) as resp:
        assert resp.status == 200, await resp.text()
        assert resp.headers["x-forge-route-rule"] == ml.id
        # The body echoes the model as the client named it (OpenAI clients match on it); the header says which.
        assert resp.headers["x-forge-model"] == "gpt-ml"
        assert (await resp.json())["choices"][0]["message"]["content"]
    async with http.post("/v1/chat/completions", json={**body, "stream": True}) as resp:
        assert resp.status == 200
        assert resp.headers["x-forge-route-rule"] == ml.id
        assert (await resp.read()).endswith(b"data: [DONE]\n\n")
