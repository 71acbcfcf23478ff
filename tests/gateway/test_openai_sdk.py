"""The official `openai` SDK, sync and async, unchanged against forge's `/v1`: models, unary and streamed chat
(OpenAI's exact chunk sequence), tool calls — through the OpenAI-compatible fake and through Ollama, with the
edge calling the core in process and over a gRPC channel."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator

import openai
import pytest
import pytest_asyncio
from openai.types.chat import (
    ChatCompletionChunk,
    ChatCompletionFunctionToolParam,
    ChatCompletionMessageFunctionToolCall,
    ChatCompletionMessageParam,
)

from forge_rpc.server.app import ForgeApp
from tests.fakes import FakeUpstream, fake_model
from tests.fakes.wire_common import TOOL_ARGUMENTS

pytestmark = pytest.mark.asyncio

USER: list[ChatCompletionMessageParam] = [{"role": "user", "content": "hello there world"}]
MODELS = ["fake/gpt-fake", "ollama/llama3.2"]


def text(n: int) -> str:
    return "".join(f"tok{i} " for i in range(n))


@pytest_asyncio.fixture
async def client(edge: ForgeApp) -> AsyncIterator[openai.AsyncOpenAI]:
    async with openai.AsyncOpenAI(base_url=f"http://127.0.0.1:{edge.http_port}/v1", api_key="x", max_retries=0) as c:
        yield c


@pytest.fixture
def sync_client(edge: ForgeApp) -> Iterator[openai.OpenAI]:
    # The sync client blocks: tests call it through asyncio.to_thread, as the server runs on the test's loop.
    with openai.OpenAI(base_url=f"http://127.0.0.1:{edge.http_port}/v1", api_key="x", max_retries=0) as c:
        yield c


def assert_stream_shape(chunks: list[ChatCompletionChunk], expected: str, finish: str, usage: bool) -> None:
    """OpenAI's sequence: role chunk, content deltas, finish chunk, then (when asked) a usage chunk."""
    assert len({(c.id, c.created, c.model) for c in chunks}) == 1
    assert chunks[0].id.startswith("chatcmpl-")
    assert all(c.object == "chat.completion.chunk" for c in chunks)
    role = chunks[0].choices[0].delta
    assert (role.role, role.content) == ("assistant", "")
    tail = 2 if usage else 1
    deltas = chunks[1:-tail]
    assert deltas
    assert all(c.choices[0].finish_reason is None and c.choices[0].delta.role is None for c in deltas)
    assert "".join(c.choices[0].delta.content or "" for c in deltas) == expected
    last = chunks[-tail]
    assert last.choices[0].finish_reason == finish
    assert last.choices[0].delta.content is None
    if usage:
        assert chunks[-1].choices == []
        assert chunks[-1].usage is not None
        assert all(c.usage is None for c in chunks[:-1])
    else:
        assert all(c.usage is None for c in chunks)


async def test_models_list_and_retrieve(client: openai.AsyncOpenAI) -> None:
    page = await client.models.list()
    ids = [m.id for m in page.data]
    assert "fake" in ids and "llama3.2:1b" in ids
    assert all(m.owned_by and m.created > 0 for m in page.data)
    model = await client.models.retrieve("llama3.2:1b")
    assert (model.id, model.owned_by) == ("llama3.2:1b", "ollama")
    wildcard = await client.models.retrieve("fake/gpt-fake")  # an id with a slash is one path parameter
    assert wildcard.id == "fake/gpt-fake"


async def test_unknown_model_retrieve_is_not_found(client: openai.AsyncOpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as info:
        await client.models.retrieve("no-such-model:7b")
    assert info.value.code == "model_not_found"
    assert info.value.type == "invalid_request_error"


@pytest.mark.parametrize("model", MODELS)
async def test_unary_completion(client: openai.AsyncOpenAI, model: str) -> None:
    name = fake_model(model, tokens=6)
    reply = await client.chat.completions.create(model=name, messages=USER)
    assert reply.object == "chat.completion"
    assert reply.id.startswith("chatcmpl-") and reply.model == name
    choice = reply.choices[0]
    assert (choice.index, choice.finish_reason, choice.message.role) == (0, "stop", "assistant")
    assert choice.message.content == text(6)
    assert choice.message.refusal is None and choice.message.tool_calls is None
    assert reply.usage is not None and reply.usage.completion_tokens == 6
    assert reply.usage.total_tokens == reply.usage.prompt_tokens + 6


async def test_unary_max_tokens_finishes_with_length(client: openai.AsyncOpenAI, fake: FakeUpstream) -> None:
    reply = await client.chat.completions.create(
        model=fake_model("fake/gpt-fake", tokens=10, tag="len"),
        messages=USER,
        max_tokens=3,
        temperature=0.5,
        stop=["zzz"],
        seed=7,
        user="u-1",
    )
    assert reply.choices[0].finish_reason == "length"
    assert reply.choices[0].message.content == text(3)
    assert reply.usage is not None and reply.usage.completion_tokens == 3
    (seen,) = await fake.requests(tag="len")
    sent = seen["body"]
    assert (sent["max_tokens"], sent["temperature"], sent["stop"], sent["seed"]) == (3, 0.5, ["zzz"], 7)


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("include_usage", [False, True])
async def test_stream_chunk_sequence(client: openai.AsyncOpenAI, model: str, include_usage: bool) -> None:
    stream = await client.chat.completions.create(
        model=fake_model(model, tokens=12),
        messages=USER,
        stream=True,
        stream_options={"include_usage": True} if include_usage else openai.omit,
    )
    chunks = [c async for c in stream]
    assert_stream_shape(chunks, text(12), "stop", include_usage)
    if include_usage:
        usage = chunks[-1].usage
        assert usage is not None and usage.completion_tokens == 12
        assert usage.total_tokens == usage.prompt_tokens + 12


async def test_stream_with_max_tokens_finishes_with_length(client: openai.AsyncOpenAI) -> None:
    stream = await client.chat.completions.create(
        model=fake_model("fake/gpt-fake", tokens=10, gap_ms=1),
        messages=USER,
        stream=True,
        max_completion_tokens=4,
    )
    assert_stream_shape([c async for c in stream], text(4), "length", usage=False)


async def test_stream_tool_calls_accumulate(client: openai.AsyncOpenAI) -> None:
    tools: list[ChatCompletionFunctionToolParam] = [
        {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}
    ]
    stream = await client.chat.completions.create(
        model=fake_model("fake/gpt-fake", tool_call="get_weather"),
        messages=USER,
        tools=tools,
        tool_choice={"type": "function", "function": {"name": "get_weather"}},
        stream=True,
    )
    chunks = [c async for c in stream]
    calls: dict[int, dict[str, str]] = {}
    for chunk in chunks[1:-1]:
        for t in chunk.choices[0].delta.tool_calls or ():
            acc = calls.setdefault(t.index, {"id": "", "name": "", "arguments": ""})
            acc["id"] += t.id or ""
            assert t.function is not None
            acc["name"] += t.function.name or ""
            acc["arguments"] += t.function.arguments or ""
    assert list(calls) == [0]
    assert calls[0]["id"] and calls[0]["name"] == "get_weather"
    assert json.loads(calls[0]["arguments"]) == json.loads(TOOL_ARGUMENTS)
    assert chunks[-1].choices[0].finish_reason == "tool_calls"


async def test_unary_tool_calls(client: openai.AsyncOpenAI) -> None:
    reply = await client.chat.completions.create(
        model=fake_model("fake/gpt-fake", tool_call="lookup"),
        messages=USER,
        tools=[{"type": "function", "function": {"name": "lookup"}}],
    )
    choice = reply.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.tool_calls is not None
    (call,) = choice.message.tool_calls
    assert isinstance(call, ChatCompletionMessageFunctionToolCall)
    assert call.id and call.function.name == "lookup"
    assert json.loads(call.function.arguments) == json.loads(TOOL_ARGUMENTS)


async def test_conversation_with_tool_results_and_text_parts(client: openai.AsyncOpenAI, fake: FakeUpstream) -> None:
    messages: list[ChatCompletionMessageParam] = [
        {"role": "system", "content": [{"type": "text", "text": "be brief"}, {"type": "text", "text": "and kind"}]},
        {"role": "user", "content": "weather?", "name": "ann"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "w", "arguments": "{}"}}],
        },
        {"role": "tool", "tool_call_id": "c1", "content": "sunny"},
    ]
    reply = await client.chat.completions.create(
        model=fake_model("fake/gpt-fake", tokens=2, tag="conv"),
        messages=messages,
        extra_body={"some_future_field": {"x": 1}},  # unknown fields are ignored, as OpenAI does
    )
    assert reply.choices[0].message.content == text(2)
    (seen,) = await fake.requests(tag="conv")
    sent = seen["body"]["messages"]
    assert sent[0]["content"] == "be brief\nand kind"
    assert sent[2]["tool_calls"][0]["function"]["name"] == "w"
    assert sent[3]["tool_call_id"] == "c1"


async def test_sync_client(sync_client: openai.OpenAI) -> None:
    def run() -> tuple[str | None, str]:
        reply = sync_client.chat.completions.create(model=fake_model("fake/gpt-fake", tokens=3), messages=USER)
        stream = sync_client.chat.completions.create(
            model=fake_model("ollama/llama3.2", tokens=5),
            messages=USER,
            stream=True,
            stream_options={"include_usage": True},
        )
        chunks = list(stream)
        assert_stream_shape(chunks, text(5), "stop", usage=True)
        ids = [m.id for m in sync_client.models.list()]
        assert "fake" in ids
        return reply.choices[0].message.content, "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)

    unary, streamed = await asyncio.to_thread(run)
    assert unary == text(3) and streamed == text(5)


async def test_request_id_is_echoed(client: openai.AsyncOpenAI) -> None:
    raw = await client.chat.completions.with_raw_response.create(
        model="fake",
        messages=USER,
        extra_headers={"x-request-id": "rid-42"},
    )
    assert raw.headers["x-request-id"] == "rid-42"
    assert raw.headers["x-forge-provider"] == "openai" and raw.headers["x-forge-model"]
    assert raw.parse().id == "chatcmpl-rid-42"
