"""The OpenAI edge over a scripted invoker, for what the core cannot produce on demand today: a 401
(the core has no auth yet) driven through the error mapping to the SDK's AuthenticationError, SSE heartbeats
while waiting for the first token, an error after a heartbeat, a deadline mid-stream; plus the pure mappings."""

from __future__ import annotations

import asyncio
import base64
import struct
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager

import aiohttp
import grpc
import openai
import orjson
import pytest
from aiohttp import web
from forge.chat.v1 import chat_pb2
from forge.rag.v1 import rag_pb2
from google.protobuf.message import Message
from openai.types.chat import ChatCompletionMessageParam

from forge_rpc.server.app import ForgeApp
from gateway.app import build_edge, start_edge
from gateway.errors import bad_request
from gateway.invoke import CallResult, InvokeError, LocalInvoker, MethodInfo
from gateway.keys import CONFIG, INVOKER, EdgeConfig
from gateway.openai import setup_openai
from gateway.openai.embeddings import embeddings_json, parse_embeddings
from gateway.openai.errors import from_invoke, from_stream_error
from tests.fakes import fake_model

USER: list[ChatCompletionMessageParam] = [{"role": "user", "content": "hi"}]


class ScriptedInvoker:
    """Answers every call with `error` after `delay`; streams yield `events` first."""

    methods: Mapping[str, MethodInfo] = {}

    def __init__(self, error: InvokeError, events: Sequence[chat_pb2.ChatEvent] = (), delay: float = 0.0) -> None:
        self.error, self.events, self.delay = error, events, delay

    async def unary(
        self, method: str, request: Message, metadata: Sequence[tuple[str, str]], timeout: float | None
    ) -> CallResult:
        await asyncio.sleep(self.delay)
        raise self.error

    async def stream(
        self, method: str, request: Message, metadata: Sequence[tuple[str, str]], timeout: float | None
    ) -> AsyncIterator[Message]:
        await asyncio.sleep(self.delay)
        for event in self.events:
            yield event
        raise self.error

    async def close(self) -> None:
        return None


@asynccontextmanager
async def openai_edge(invoker: ScriptedInvoker, heartbeat_s: float = 15.0) -> AsyncIterator[str]:
    app = web.Application()
    app[INVOKER] = invoker
    app[CONFIG] = EdgeConfig(sse_heartbeat_s=heartbeat_s)
    setup_openai(app)
    runner, port = await start_edge(app, "127.0.0.1", 0, shutdown_timeout=0.1)
    try:
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        await runner.cleanup()


UNAUTHENTICATED = InvokeError(grpc.StatusCode.UNAUTHENTICATED, "missing or invalid API key")


@pytest.mark.parametrize("stream", [False, True])
async def test_unauthenticated_is_authentication_error(stream: bool) -> None:
    async with (
        openai_edge(ScriptedInvoker(UNAUTHENTICATED)) as base,
        openai.AsyncOpenAI(base_url=base, api_key="x", max_retries=0) as client,
    ):
        with pytest.raises(openai.AuthenticationError) as info:
            await client.chat.completions.create(model="m", messages=USER, stream=stream)
        assert info.value.type == "authentication_error" and info.value.code == "invalid_api_key"
        with pytest.raises(openai.AuthenticationError):
            await client.models.list()


async def test_heartbeats_until_an_error_which_then_goes_in_band() -> None:
    invoker = ScriptedInvoker(InvokeError(grpc.StatusCode.UNAVAILABLE, "upstream down"), delay=0.25)
    async with openai_edge(invoker, heartbeat_s=0.05) as base, aiohttp.ClientSession() as http:
        body = {"model": "m", "messages": USER, "stream": True}
        async with http.post(f"{base}/chat/completions", json=body) as resp:
            assert resp.status == 200  # committed by the first heartbeat
            raw = await resp.read()
    events = raw.split(b"\n\n")[:-1]
    assert len(events) >= 3 and set(events[:-1]) == {b": ping"}
    assert events[-1].startswith(b'data: {"error":{"message":"upstream down","type":"server_error"')


async def test_heartbeats_then_tokens_through_the_real_core(forge: ForgeApp) -> None:
    edge = build_edge(LocalInvoker(forge.methods), EdgeConfig(sse_heartbeat_s=0.05))
    runner, port = await start_edge(edge, "127.0.0.1", 0, shutdown_timeout=0.1)
    try:
        async with aiohttp.ClientSession() as http:
            body = {"model": fake_model("fake/gpt-fake", ttft_ms=250, tokens=3), "messages": USER, "stream": True}
            async with http.post(f"http://127.0.0.1:{port}/v1/chat/completions", json=body) as resp:
                raw = await resp.read()
    finally:
        await runner.cleanup()
    events = raw.split(b"\n\n")
    assert events[0] == b": ping" and raw.endswith(b"data: [DONE]\n\n")
    assert b": ping" not in raw[raw.index(b"data: ") :]


async def test_deadline_mid_stream_is_in_band(local_edge: ForgeApp) -> None:
    async with aiohttp.ClientSession() as http:
        body = {"model": fake_model("fake/gpt-fake", tokens=100, gap_ms=20), "messages": USER, "stream": True}
        url = f"http://127.0.0.1:{local_edge.http_port}/v1/chat/completions"
        async with http.post(url, json=body, headers={"x-request-timeout": "0.2"}) as resp:
            raw = await resp.read()
    last = raw.split(b"\n\n")[-2]
    assert last.startswith(b'data: {"error":') and b'"code":"deadline_exceeded"' in last


def test_error_mapping_table() -> None:
    cases = [
        (grpc.StatusCode.UNAUTHENTICATED, 401, "authentication_error"),
        (grpc.StatusCode.PERMISSION_DENIED, 403, "permission_error"),
        (grpc.StatusCode.NOT_FOUND, 404, "not_found_error"),
        (grpc.StatusCode.RESOURCE_EXHAUSTED, 429, "rate_limit_error"),
        (grpc.StatusCode.INVALID_ARGUMENT, 400, "invalid_request_error"),
        (grpc.StatusCode.FAILED_PRECONDITION, 400, "invalid_request_error"),
        (grpc.StatusCode.UNIMPLEMENTED, 501, "server_error"),
        (grpc.StatusCode.UNAVAILABLE, 503, "server_error"),
        (grpc.StatusCode.DEADLINE_EXCEEDED, 504, "server_error"),
        (grpc.StatusCode.INTERNAL, 500, "server_error"),
    ]
    for code, status, kind in cases:
        err = from_invoke(InvokeError(code, "boom"))
        assert (err.status, err.type, err.message) == (status, kind, "boom"), code


def test_field_violation_becomes_openai_param() -> None:
    err = from_invoke(bad_request("bad role", "chat.messages[2].role"), "chat.")
    assert (err.status, err.param, err.message) == (400, "messages[2].role", "messages[2].role: bad role")


def test_stream_error_event_mapping() -> None:
    err = from_stream_error(grpc.StatusCode.UNAVAILABLE.value[0], "PROVIDER_PROTOCOL", "cut")
    assert err.sse() == (
        b'data: {"error":{"message":"cut","type":"server_error","param":null,"code":"provider_protocol"}}\n\n'
    )


def test_embeddings_base64_is_float32_little_endian() -> None:
    call = parse_embeddings({"model": "m", "input": ["a"], "encoding_format": "base64"})
    assert list(call.request.input) == ["a"]
    reply = rag_pb2.CreateEmbeddingsResponse(data=[rag_pb2.Embedding(index=0, embedding=[0.5, -1.0, 2.25])])
    data = orjson.loads(embeddings_json(reply, call))
    assert data["model"] == "m" and data["object"] == "list"
    raw = base64.b64decode(data["data"][0]["embedding"])
    assert struct.unpack("<3f", raw) == (0.5, -1.0, 2.25)
