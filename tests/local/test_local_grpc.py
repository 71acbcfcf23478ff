"""The local model end to end through a real gRPC server and the OpenAI edge: real tokens, usage, cancellation,
the waiting-line bound, determinism."""

from __future__ import annotations

import asyncio
import time

import grpc
import openai
import pytest
from forge.chat.v1 import chat_pb2, chat_pb2_grpc
from forge.models.v1 import models_pb2, models_pb2_grpc

from forge_rpc.adapters.providers.local_llama import LOCAL_MODEL_NAME, LocalLlamaProvider
from forge_rpc.server.app import ForgeApp
from tests.local.conftest import needs_local_model

pytestmark = [pytest.mark.asyncio, needs_local_model]

QUESTION = "Name three colours."


def chat(text: str = QUESTION, **kw: object) -> chat_pb2.ChatRequest:
    message = chat_pb2.Message(role="user", content=text)
    return chat_pb2.ChatRequest(model=LOCAL_MODEL_NAME, messages=[message], **kw)  # type: ignore[arg-type]


def stream_call(channel: grpc.aio.Channel, request: chat_pb2.ChatRequest) -> grpc.aio.UnaryStreamCall:  # type: ignore[type-arg]
    stub = chat_pb2_grpc.ChatServiceStub(channel)
    return stub.StreamChatCompletion(chat_pb2.StreamChatCompletionRequest(chat=request))


async def collect(channel: grpc.aio.Channel, request: chat_pb2.ChatRequest) -> list[chat_pb2.ChatEvent]:
    return [e async for e in stream_call(channel, request)]


def text_of(events: list[chat_pb2.ChatEvent]) -> str:
    return "".join(e.delta.content for e in events if e.WhichOneof("event") == "delta")


async def until_idle(provider: LocalLlamaProvider, within_s: float) -> float:
    """Seconds until no generation runs or waits."""
    started = time.monotonic()
    await asyncio.wait_for(provider.until_idle(), within_s)
    return time.monotonic() - started


async def test_model_is_listed_as_the_default(local_channel: grpc.aio.Channel) -> None:
    stub = models_pb2_grpc.ModelsServiceStub(local_channel)
    listing = await stub.ListModels(models_pb2.ListModelsRequest())
    (model,) = [m for m in listing.models if m.name == LOCAL_MODEL_NAME]
    assert model.provider == "local"
    assert model.is_default and listing.default_model == LOCAL_MODEL_NAME


async def test_stream_delivers_real_tokens_usage_and_finish(local_channel: grpc.aio.Channel) -> None:
    events = await collect(local_channel, chat(temperature=0.0, seed=1, max_tokens=8))
    kinds = [e.WhichOneof("event") for e in events]
    assert kinds[-2:] == ["usage", "finish"] and set(kinds[:-2]) == {"delta"}
    assert text_of(events).strip()
    usage = events[-2].usage
    assert 0 < usage.completion_tokens <= 8
    assert usage.prompt_tokens > len(QUESTION.split())  # the chat template's framing counts too
    assert not usage.estimated  # llama.cpp's own token counts, not forge's estimate
    finish = events[-1].finish
    assert finish.reason in (chat_pb2.FINISH_REASON_LENGTH, chat_pb2.FINISH_REASON_STOP)
    assert (finish.provider, finish.model) == ("local", LOCAL_MODEL_NAME)
    running = [e.running_usage.completion_tokens for e in events if e.WhichOneof("event") == "delta"]
    assert running == sorted(running) and running[-1] == usage.completion_tokens


async def test_unary_and_stream_agree(local_channel: grpc.aio.Channel) -> None:
    stub = chat_pb2_grpc.ChatServiceStub(local_channel)
    request = chat(temperature=0.0, seed=1, max_tokens=12)
    reply = await stub.CreateChatCompletion(chat_pb2.CreateChatCompletionRequest(chat=request))
    assert reply.choices[0].message.content.strip()
    assert reply.provider == "local"
    assert 0 < reply.usage.completion_tokens <= 12
    assert reply.choices[0].message.content == text_of(await collect(local_channel, request))


@pytest.mark.parametrize("temperature", [0.0, 0.8])
async def test_same_seed_gives_the_same_text(local_channel: grpc.aio.Channel, temperature: float) -> None:
    request = chat("Tell me a story.", temperature=temperature, seed=7, max_tokens=24)
    first = text_of(await collect(local_channel, request))
    second = text_of(await collect(local_channel, request))
    assert first and first == second


async def test_two_concurrent_requests_both_finish(local_channel: grpc.aio.Channel) -> None:
    a, b = await asyncio.gather(
        collect(local_channel, chat(temperature=0.0, seed=1, max_tokens=16)),
        collect(local_channel, chat("Say hello.", temperature=0.0, seed=1, max_tokens=16)),
    )
    for events in (a, b):
        assert text_of(events).strip()
        assert events[-1].WhichOneof("event") == "finish"


async def test_cancelled_stream_frees_the_model(
    local_channel: grpc.aio.Channel, local_provider: LocalLlamaProvider
) -> None:
    call = stream_call(local_channel, chat("Write a long story about the sea.", temperature=0.0, max_tokens=256))
    first = await call.read()
    assert isinstance(first, chat_pb2.ChatEvent) and first.WhichOneof("event") == "delta"
    assert local_provider.queued == 1
    call.cancel()
    freed_after = await until_idle(local_provider, within_s=2.0)
    # 256 tokens take ~3 s here; the worker notices the cancel at its next token (~12 ms each).
    assert freed_after < 0.5, f"the worker ran on for {freed_after:.3f}s after the cancel"
    started = time.monotonic()
    events = await collect(local_channel, chat(temperature=0.0, seed=1, max_tokens=4))
    assert text_of(events) and time.monotonic() - started < 2.0


async def test_waiting_line_is_bounded(local_channel: grpc.aio.Channel, local_provider: LocalLlamaProvider) -> None:
    bound = 1 + 4  # the running generation plus the default four waiting
    calls = [stream_call(local_channel, chat(temperature=0.0, max_tokens=200)) for _ in range(bound)]
    try:
        for _ in range(500):
            if local_provider.queued == bound:
                break
            await asyncio.sleep(0.01)
        assert local_provider.queued == bound
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await collect(local_channel, chat(max_tokens=4))
        assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "4 requests are already waiting" in (info.value.details() or "")
    finally:
        for call in calls:
            call.cancel()
    await until_idle(local_provider, within_s=2.0)


async def test_openai_sdk_streams_from_the_local_model(local_forge: ForgeApp) -> None:
    base = f"http://127.0.0.1:{local_forge.http_port}/v1"
    async with openai.AsyncOpenAI(base_url=base, api_key="unused", max_retries=0) as client:
        stream = await client.chat.completions.create(
            model=LOCAL_MODEL_NAME,
            messages=[{"role": "user", "content": QUESTION}],
            stream=True,
            stream_options={"include_usage": True},
            temperature=0,
            seed=1,
            max_tokens=8,
        )
        chunks = [c async for c in stream]
        models = [m.id async for m in client.models.list()]
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text.strip()
    assert chunks[-1].usage is not None and 0 < chunks[-1].usage.completion_tokens <= 8
    assert LOCAL_MODEL_NAME in models
