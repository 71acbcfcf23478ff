"""ChatService end to end: real gRPC server, real provider clients, the fake upstream process behind."""

from __future__ import annotations

import asyncio

import grpc
import pytest
from forge.chat.v1 import chat_pb2, chat_pb2_grpc

from tests.fakes import FakeUpstream, fake_model

pytestmark = pytest.mark.asyncio


def request(model: str, text: str = "hello there world", **kw: object) -> chat_pb2.ChatRequest:
    return chat_pb2.ChatRequest(model=model, messages=[chat_pb2.Message(role="user", content=text)], **kw)  # type: ignore[arg-type]


async def collect(stub: chat_pb2_grpc.ChatServiceAsyncStub, chat: chat_pb2.ChatRequest) -> list[chat_pb2.ChatEvent]:
    return [e async for e in stub.StreamChatCompletion(chat_pb2.StreamChatCompletionRequest(chat=chat))]


def text_of(events: list[chat_pb2.ChatEvent]) -> str:
    return "".join(e.delta.content for e in events if e.WhichOneof("event") == "delta")


async def test_stream_delivers_every_token_then_usage_then_finish(channel: grpc.aio.Channel) -> None:
    stub = chat_pb2_grpc.ChatServiceStub(channel)
    events = await collect(stub, request(fake_model("fake/gpt-fake", tokens=20)))
    assert text_of(events) == "".join(f"tok{i} " for i in range(20))
    assert [e.sequence for e in events] == list(range(len(events)))
    kinds = [e.WhichOneof("event") for e in events]
    assert kinds[-2:] == ["usage", "finish"]
    assert set(kinds[:-2]) == {"delta"}
    assert events[0].delta.role == "assistant"
    usage = events[-2].usage
    assert (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens) == (3, 20, 23)
    assert not usage.estimated
    finish = events[-1].finish
    assert finish.reason == chat_pb2.FINISH_REASON_STOP
    assert finish.provider == "openai"
    assert finish.model.startswith("gpt-fake")
    running = [e.running_usage.completion_tokens for e in events if e.WhichOneof("event") == "delta"]
    assert running == sorted(running) and running[-1] == 20


async def test_unary_returns_openai_shape_and_seed_fields(channel: grpc.aio.Channel) -> None:
    stub = chat_pb2_grpc.ChatServiceStub(channel)
    reply = await stub.CreateChatCompletion(
        chat_pb2.CreateChatCompletionRequest(chat=request(fake_model("fake/gpt-fake", tokens=5), max_tokens=3))
    )
    assert reply.choices[0].message.content == "tok0 tok1 tok2 "
    assert reply.choices[0].finish_reason == chat_pb2.FINISH_REASON_LENGTH
    assert reply.response == reply.choices[0].message.content
    assert reply.usage.completion_tokens == 3
    assert reply.tokens_used == reply.usage.total_tokens == 3 + 3
    assert reply.id


async def test_prompt_shorthand_and_default_model(channel: grpc.aio.Channel) -> None:
    stub = chat_pb2_grpc.ChatServiceStub(channel)
    reply = await stub.CreateChatCompletion(
        chat_pb2.CreateChatCompletionRequest(chat=chat_pb2.ChatRequest(prompt="one two three four"))
    )
    assert reply.model == "fake"
    assert reply.usage.prompt_tokens == 4
    assert reply.choices[0].message.content.startswith("tok0")


async def test_request_id_is_echoed_and_used_as_completion_id(channel: grpc.aio.Channel) -> None:
    stub = chat_pb2_grpc.ChatServiceStub(channel)
    call = stub.CreateChatCompletion(
        chat_pb2.CreateChatCompletionRequest(chat=request("fake")), metadata=(("x-request-id", "req-123"),)
    )
    reply = await call
    assert reply.id == "req-123"
    trailing = dict(tuple(await call.trailing_metadata()))
    assert trailing["x-request-id"] == "req-123"
    assert trailing["x-forge-provider"] == "openai"
    assert trailing["x-forge-model"] == "fake"
    assert float(trailing["x-forge-upstream-ms"]) > 0


async def test_ollama_native_stream_and_unary(channel: grpc.aio.Channel) -> None:
    stub = chat_pb2_grpc.ChatServiceStub(channel)
    events = await collect(stub, request(fake_model("ollama/llama3.2", tokens=6)))
    assert text_of(events) == "".join(f"tok{i} " for i in range(6))
    assert events[-1].finish.provider == "ollama"
    assert events[-2].usage.completion_tokens == 6
    reply = await stub.CreateChatCompletion(chat_pb2.CreateChatCompletionRequest(chat=request("llama3.2:1b")))
    assert reply.choices[0].message.content.startswith("tok0")
    assert reply.provider == "ollama"


async def test_tool_calls_stream_as_fragments(channel: grpc.aio.Channel) -> None:
    stub = chat_pb2_grpc.ChatServiceStub(channel)
    tool = chat_pb2.Tool(type="function", function=chat_pb2.FunctionDefinition(name="lookup"))
    events = await collect(stub, request(fake_model("fake/gpt-fake", tool_call="lookup"), tools=[tool]))
    calls = [e.tool_call for e in events if e.WhichOneof("event") == "tool_call"]
    assert calls[0].name == "lookup" and calls[0].id
    assert "".join(c.arguments for c in calls) == '{"x": 1}'
    assert events[-1].finish.reason == chat_pb2.FINISH_REASON_TOOL_CALLS


async def test_batch_runs_all_and_reports_failures_in_place(channel: grpc.aio.Channel) -> None:
    stub = chat_pb2_grpc.ChatServiceStub(channel)
    reply = await stub.BatchCreateChatCompletions(
        chat_pb2.BatchCreateChatCompletionsRequest(
            requests=[request(fake_model("fake/gpt-fake", tokens=2)), request("no-such-model"), request("fake")]
        )
    )
    assert [r.WhichOneof("result") for r in reply.results] == ["completion", "error", "completion"]
    assert reply.results[1].error.reason == "MODEL_NOT_FOUND"
    assert reply.results[0].completion.response == "tok0 tok1 "


async def test_waiting_deltas_are_merged(channel: grpc.aio.Channel, fake: FakeUpstream) -> None:
    """Deltas already waiting when forge reads the upstream are merged: fewer messages, every token kept."""
    stub = chat_pb2_grpc.ChatServiceStub(channel)
    call = stub.StreamChatCompletion(
        chat_pb2.StreamChatCompletionRequest(chat=request(fake_model("fake/gpt-fake", tokens=400, ttft_ms=50)))
    )
    first = await call.read()
    assert isinstance(first, chat_pb2.ChatEvent)
    await asyncio.sleep(0.3)  # a slow reader; the upstream has sent everything by now
    events = [first]
    while (event := await call.read()) is not grpc.aio.EOF:
        assert isinstance(event, chat_pb2.ChatEvent)
        events.append(event)
    assert text_of(events) == "".join(f"tok{i} " for i in range(400))
    deltas = [e for e in events if e.WhichOneof("event") == "delta"]
    assert len(deltas) < 100
    assert events[-2].usage.completion_tokens == 400


async def test_upstream_connection_is_reused_across_streams(channel: grpc.aio.Channel, fake: FakeUpstream) -> None:
    """A finished stream hands its connection back to the pool: the next one does not pay a new connect."""
    stub = chat_pb2_grpc.ChatServiceStub(channel)
    for i in range(10):
        await collect(stub, request(fake_model("fake/gpt-fake", tokens=3, tag=f"pool-{i}")))
    ports = {(await fake.requests(tag=f"pool-{i}"))[0]["peer_port"] for i in range(10)}
    assert len(ports) == 1
