"""OpenAI's error shape with the status the SDK types: unknown model, bad bodies, upstream 429 with
`retry-after`, 413, malformed JSON; byte-exact SSE framing; an error after the first byte sent in-band;
embeddings (UNIMPLEMENTED in the core today → 501)."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from typing import Any, cast

import aiohttp
import openai
import pytest
import pytest_asyncio
from openai.types.chat import ChatCompletionMessageParam

from forge_rpc.server.app import ForgeApp
from tests.fakes import fake_model

pytestmark = pytest.mark.asyncio

USER: list[ChatCompletionMessageParam] = [{"role": "user", "content": "hello there world"}]


@pytest_asyncio.fixture
async def client(edge: ForgeApp) -> AsyncIterator[openai.AsyncOpenAI]:
    async with openai.AsyncOpenAI(base_url=f"http://127.0.0.1:{edge.http_port}/v1", api_key="x", max_retries=0) as c:
        yield c


@pytest.mark.parametrize("stream", [False, True])
async def test_unknown_model_is_not_found(client: openai.AsyncOpenAI, stream: bool) -> None:
    with pytest.raises(openai.NotFoundError) as info:
        await client.chat.completions.create(model="gpt-nonexistent", messages=USER, stream=stream)
    err = info.value
    assert (err.status_code, err.type, err.code, err.param) == (
        404,
        "invalid_request_error",
        "model_not_found",
        "model",
    )
    assert "fake" in err.message
    assert err.response.headers["x-request-id"]


async def test_bad_role_names_the_param(client: openai.AsyncOpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        wizard = cast(list[ChatCompletionMessageParam], [{"role": "wizard", "content": "x"}])
        await client.chat.completions.create(model="fake", messages=wizard)
    assert info.value.param == "messages[0].role"
    assert "wizard" in info.value.message and "chat." not in info.value.message


async def test_wrong_type_names_the_param(client: openai.AsyncOpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        await client.chat.completions.create(model="fake", messages=USER, extra_body={"temperature": "hot"})
    assert (info.value.param, info.value.code) == ("temperature", "invalid_type")
    assert "expected a number" in info.value.message


@pytest.mark.parametrize("stream", [False, True])
async def test_upstream_429_is_rate_limit_error_with_retry_after(client: openai.AsyncOpenAI, stream: bool) -> None:
    with pytest.raises(openai.RateLimitError) as info:
        await client.chat.completions.create(
            model=fake_model("fake/gpt-fake", fail=429, retry_after=3),
            messages=USER,
            stream=stream,
        )
    assert info.value.response.headers["retry-after"] == "3"
    assert info.value.type == "rate_limit_error"


# (body, status, param): every one answered in OpenAI's shape, never a 500.
BAD_BODIES: list[tuple[object, int, str | None]] = [
    ({"messages": USER}, 400, "model"),
    ({"model": "fake"}, 400, "messages"),
    ({"model": 3, "messages": USER}, 400, "model"),
    ({"model": "fake", "messages": "hi"}, 400, "messages"),
    ({"model": "fake", "messages": ["hi"]}, 400, "messages[0]"),
    ({"model": "fake", "messages": [{"content": "x"}]}, 400, "messages[0].role"),
    ({"model": "fake", "messages": [{"role": "user", "content": 5}]}, 400, "messages[0].content"),
    (
        {"model": "fake", "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {}}]}]},
        400,
        "messages[0].content[0].type",
    ),
    ({"model": "fake", "messages": USER, "temperature": True}, 400, "temperature"),
    ({"model": "fake", "messages": USER, "temperature": 9}, 400, "temperature"),
    ({"model": "fake", "messages": USER, "max_tokens": 1.5}, 400, "max_tokens"),
    ({"model": "fake", "messages": USER, "max_tokens": 2**40}, 400, "max_tokens"),
    ({"model": "fake", "messages": USER, "n": 2}, 400, "n"),
    ({"model": "fake", "messages": USER, "stop": [1]}, 400, "stop[0]"),
    ({"model": "fake", "messages": USER, "stream": "yes"}, 400, "stream"),
    ({"model": "fake", "messages": USER, "stream_options": {"include_usage": 1}}, 400, "stream_options.include_usage"),
    ({"model": "fake", "messages": USER, "tools": [{"type": "function"}]}, 400, "tools[0].function"),
    ({"model": "fake", "messages": USER, "tool_choice": 3}, 400, "tool_choice"),
    ({"model": "fake", "messages": USER, "metadata": {"k": 1}}, 400, "metadata.k"),
    ({"model": "fake", "messages": USER, "response_format": {"type": "yaml"}}, 400, "response_format.type"),
    ({"model": "fake", "messages": []}, 400, "messages"),
    ([1, 2], 400, None),
]


@pytest.mark.parametrize(("body", "status", "param"), BAD_BODIES)
async def test_bad_bodies(http: aiohttp.ClientSession, body: object, status: int, param: str | None) -> None:
    async with http.post("/v1/chat/completions", json=body) as resp:
        assert resp.status == status
        error = (await resp.json())["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert (error["type"], error["param"]) == ("invalid_request_error", param)
    assert error["message"]


async def test_malformed_json_is_400(http: aiohttp.ClientSession) -> None:
    async with http.post(
        "/v1/chat/completions", data=b'{"model": "fake",', headers={"content-type": "application/json"}
    ) as resp:
        assert resp.status == 400
        assert resp.headers["x-request-id"]
        error = (await resp.json())["error"]
    assert error["type"] == "invalid_request_error" and "JSON" in error["message"]


async def test_huge_body_is_413(http: aiohttp.ClientSession, edge: ForgeApp) -> None:
    body = b'{"model": "fake", "messages": [], "pad": "' + b"x" * (17 * 1024 * 1024) + b'"}'
    async with http.post("/v1/chat/completions", data=body) as resp:
        assert resp.status == 413
        error = (await resp.json())["error"]
    assert error["type"] == "invalid_request_error"


async def test_raw_sse_framing(http: aiohttp.ClientSession) -> None:
    body = {"model": fake_model("fake/gpt-fake", tokens=5, gap_ms=1), "messages": USER, "stream": True}
    async with http.post("/v1/chat/completions", json=body, headers={"x-request-id": "sse-1"}) as resp:
        assert resp.status == 200
        assert resp.headers["content-type"] == "text/event-stream"
        assert resp.headers["cache-control"] == "no-cache"
        assert resp.headers["x-accel-buffering"] == "no"
        assert resp.headers["x-request-id"] == "sse-1"
        raw = await resp.read()
    assert raw.endswith(b"\n\ndata: [DONE]\n\n")
    events = raw.split(b"\n\n")
    assert events[-1] == b""
    assert all(e.startswith(b'data: {"id":"chatcmpl-sse-1","object":"chat.completion.chunk",') for e in events[:-2])
    assert events[0].endswith(b'"delta":{"role":"assistant","content":""},"logprobs":null,"finish_reason":null}]}')
    assert events[-3].endswith(b'"delta":{},"logprobs":null,"finish_reason":"stop"}]}')
    assert b'"usage"' not in raw


async def test_error_after_first_byte_is_in_band(client: openai.AsyncOpenAI, http: aiohttp.ClientSession) -> None:
    model = fake_model("fake/gpt-fake", tokens=10, cut_after=3)
    stream = await client.chat.completions.create(model=model, messages=USER, stream=True)
    received: list[str] = []
    with pytest.raises(openai.APIError) as info:
        async for chunk in stream:
            received.append(chunk.choices[0].delta.content or "")
    assert received and received[0] == ""  # the role chunk came before the failure
    assert "broken response" in info.value.message
    async with http.post("/v1/chat/completions", json={"model": model, "messages": USER, "stream": True}) as resp:
        raw = await resp.read()
    last = raw.rstrip(b"\n").rsplit(b"\n\n", 1)[-1]
    assert last.startswith(b'data: {"error":{"message":') and b'"type":"server_error"' in last
    assert b"[DONE]" not in raw


async def test_embeddings_unknown_model_is_an_sdk_error(client: openai.AsyncOpenAI) -> None:
    with pytest.raises(openai.APIStatusError) as info:
        await client.embeddings.create(model="nope/never", input=["hello"])
    assert 400 <= info.value.status_code < 500


async def test_embeddings_bad_input_is_400(http: aiohttp.ClientSession) -> None:
    for body, param in [({"model": "m", "input": [1, 2]}, "input"), ({"input": "x"}, "model")]:
        async with http.post("/v1/embeddings", json=body) as resp:
            assert resp.status == 400
            assert (await resp.json())["error"]["param"] == param


@pytest.mark.parametrize("encoding_format", ["float", "base64"])
async def test_embeddings(client: openai.AsyncOpenAI, http: aiohttp.ClientSession, encoding_format: str) -> None:
    # The SDK asks for base64 unless told otherwise and decodes it; both forms must give the same vectors.
    kwargs: dict[str, Any] = {} if encoding_format == "base64" else {"encoding_format": "float"}
    reply = await client.embeddings.create(model="local/all-MiniLM-L6-v2", input=["hello", "world"], **kwargs)
    assert [d.index for d in reply.data] == [0, 1]
    assert len(reply.data[0].embedding) > 0 and reply.data[0].embedding != reply.data[1].embedding
    body = {"model": "local/all-MiniLM-L6-v2", "input": "hello", "encoding_format": "base64"}
    async with http.post("/v1/embeddings", json=body) as resp:
        vector = (await resp.json())["data"][0]["embedding"]
    assert len(base64.b64decode(vector)) == 4 * len(reply.data[0].embedding)
    assert len(reply.data[0].embedding) == 384  # the offline all-MiniLM-L6-v2
