"""Self-test of the fake upstream's OpenAI wire and its request recording,
driven through the official openai SDK (and raw aiohttp for timing).

If these pass, the fake speaks the wire format well enough for the real
client to accept it, and its records are accurate enough for
cancellation-latency assertions.
"""

from __future__ import annotations

import asyncio
import json
import time

import aiohttp
import httpx
import openai
import pytest
from openai.types.chat import ChatCompletionChunk, ChatCompletionMessageParam, ChatCompletionToolParam

from tests.fakes import FakeUpstream, fake_model

pytestmark = pytest.mark.asyncio(loop_scope="module")

USER: list[ChatCompletionMessageParam] = [{"role": "user", "content": "hello there world"}]  # 3 words
TOOLS: list[ChatCompletionToolParam] = [
    {"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}
]


def oai(fake: FakeUpstream, key: str = "x") -> openai.AsyncOpenAI:
    # max_retries=0: the SDK would otherwise retry injected 429/5xx itself.
    return openai.AsyncOpenAI(base_url=fake.openai_base, api_key=key, max_retries=0)


# -- OpenAI through the official SDK -----------------------------------------


async def test_openai_unary(fake: FakeUpstream) -> None:
    async with oai(fake) as client:
        done = await client.chat.completions.create(model=fake_model("gpt-fake", tokens=5, tag="u"), messages=USER)
        capped = await client.chat.completions.create(model="gpt-fake", messages=USER, max_tokens=2)
    assert done.id.startswith("chatcmpl-")
    assert done.model == "gpt-fake"
    assert done.choices[0].message.content == "tok0 tok1 tok2 tok3 tok4 "
    assert done.choices[0].finish_reason == "stop"
    assert done.usage is not None
    assert (done.usage.prompt_tokens, done.usage.completion_tokens) == (3, 5)
    assert done.usage.total_tokens == 8
    assert capped.choices[0].message.content == "tok0 tok1 "
    assert capped.choices[0].finish_reason == "length"
    [rec] = await fake.requests(tag="u")
    assert rec["tokens_sent"] == 5
    assert rec["status"] == 200
    assert rec["client_closed_early"] is False
    assert rec["headers"]["authorization"] == "Bearer x"
    assert rec["body"]["messages"] == USER


async def test_openai_stream_with_usage(fake: FakeUpstream) -> None:
    async with oai(fake) as client:
        stream = await client.chat.completions.create(
            model=fake_model("gpt-fake", tokens=4),
            messages=USER,
            stream=True,
            stream_options={"include_usage": True},
        )
        chunks = [chunk async for chunk in stream]
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "tok0 tok1 tok2 tok3 "
    assert chunks[-2].choices[0].finish_reason == "stop"
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == 4
    assert all(c.usage is None for c in chunks[:-1])


async def test_openai_tool_call_stream_and_unary(fake: FakeUpstream) -> None:
    model = fake_model("gpt-fake", tool_call="f")
    async with oai(fake) as client:
        stream = await client.chat.completions.create(model=model, messages=USER, tools=TOOLS, stream=True)
        chunks = [chunk async for chunk in stream]
        unary = await client.chat.completions.create(model=model, messages=USER, tools=TOOLS)
    first = chunks[0].choices[0].delta.tool_calls
    assert first is not None
    assert first[0].id is not None
    assert first[0].function is not None
    assert first[0].function.name == "f"
    args = ""
    for chunk in chunks[1:]:
        for call in chunk.choices[0].delta.tool_calls or []:
            assert call.function is not None
            args += call.function.arguments or ""
    assert json.loads(args) == {"x": 1}
    assert chunks[-1].choices[0].finish_reason == "tool_calls"
    calls = unary.choices[0].message.tool_calls
    assert calls is not None
    assert unary.choices[0].finish_reason == "tool_calls"
    assert calls[0].type == "function"
    assert calls[0].function.arguments == '{"x": 1}'


async def test_openai_embeddings_base64_and_float(fake: FakeUpstream) -> None:
    async with oai(fake) as client:
        b64 = await client.embeddings.create(model="text-embedding-fake", input=["a b", "c"])
        flt = await client.embeddings.create(
            model="text-embedding-fake", input="a b", encoding_format="float", dimensions=8
        )
        models = await client.models.list()
    assert [d.index for d in b64.data] == [0, 1]
    assert len(b64.data[0].embedding) == 8
    assert b64.data[0].embedding == flt.data[0].embedding
    assert b64.data[0].embedding != b64.data[1].embedding
    assert abs(sum(v * v for v in flt.data[0].embedding) - 1.0) < 1e-5
    assert b64.usage.prompt_tokens == 3
    assert [m.id for m in models.data] == ["gpt-fake", "gpt-fake-2", "text-embedding-fake"]


async def test_openai_errors(fake: FakeUpstream) -> None:
    async with oai(fake, key="bad-key") as bad:
        with pytest.raises(openai.AuthenticationError) as auth:
            await bad.chat.completions.create(model="gpt-fake", messages=USER)
    assert auth.value.code == "invalid_api_key"
    async with oai(fake) as client:
        with pytest.raises(openai.RateLimitError) as limited:
            await client.chat.completions.create(model=fake_model("gpt-fake", fail=429, retry_after=7), messages=USER)
        with pytest.raises(openai.NotFoundError):
            await client.chat.completions.create(model=fake_model("gpt-fake", fail=404), messages=USER)
        with pytest.raises(openai.InternalServerError):
            await client.chat.completions.create(model=fake_model("gpt-fake", fail=503), messages=USER, stream=True)
        with pytest.raises(openai.BadRequestError) as empty:
            await client.chat.completions.create(model="gpt-fake", messages=[])
        with pytest.raises(openai.BadRequestError, match="unknown fake option"):
            await client.chat.completions.create(model="gpt-fake@ttft=1", messages=USER)
    assert limited.value.code == "rate_limit_exceeded"
    assert limited.value.response.headers["retry-after"] == "7"
    assert empty.value.param == "messages"


async def _texts(stream: openai.AsyncStream[ChatCompletionChunk], into: list[str]) -> None:
    async for chunk in stream:
        into.append(chunk.choices[0].delta.content or "")


async def test_openai_cut_and_malformed_streams(fake: FakeUpstream) -> None:
    got: list[str] = []
    async with oai(fake) as client:
        cut = await client.chat.completions.create(
            model=fake_model("gpt-fake", tokens=10, cut_after=3, tag="cut"),
            messages=USER,
            stream=True,
        )
        # httpx reports the truncated chunked body as a RemoteProtocolError.
        with pytest.raises((httpx.TransportError, openai.APIError)):
            await _texts(cut, got)
        malformed = await client.chat.completions.create(
            model=fake_model("gpt-fake", tokens=10, malformed_after=2),
            messages=USER,
            stream=True,
        )
        with pytest.raises(json.JSONDecodeError):
            await _texts(malformed, [])
    assert "".join(got) == "tok0 tok1 tok2 "
    rec = await fake.wait_closed("cut", timeout=2)
    assert rec["tokens_sent"] == 3
    assert rec["client_closed_early"] is False


async def test_stream_disconnect_during_ttft_is_recorded_promptly(fake: FakeUpstream) -> None:
    async with oai(fake) as client:
        stream = await client.chat.completions.create(
            model=fake_model("gpt-fake", ttft_ms=2000, tag="x"),
            messages=USER,
            stream=True,
        )
        # create() returns once headers (and the role chunk) are in.
        closed_at = time.monotonic()
        await stream.close()
    rec = await fake.wait_closed("x", timeout=2)
    assert rec["client_closed_early"] is True
    assert rec["tokens_sent"] == 0
    assert rec["ended"] is not None
    assert rec["ended"] - closed_at < 0.05


async def test_unary_disconnect_during_delay_is_recorded(fake: FakeUpstream) -> None:
    body = {"model": fake_model("gpt-fake", ttft_ms=3000, tag="slow"), "messages": USER}
    async with aiohttp.ClientSession() as http:
        with pytest.raises(asyncio.TimeoutError):
            await http.post(
                f"{fake.openai_base}/chat/completions",
                json=body,
                timeout=aiohttp.ClientTimeout(total=0.2),
            )
        gave_up = time.monotonic()
    rec = await fake.wait_closed("slow", timeout=2)
    assert rec["client_closed_early"] is True
    assert rec["ended"] - gave_up < 0.05


async def test_ttft_and_gap_pacing(fake: FakeUpstream) -> None:
    model = fake_model("gpt-fake", tokens=3, ttft_ms=200, gap_ms=50)
    body = {"model": model, "messages": USER, "stream": True}
    arrivals: list[float] = []
    async with aiohttp.ClientSession() as http:
        t0 = time.monotonic()
        async with http.post(f"{fake.openai_base}/chat/completions", json=body) as resp:
            async for raw in resp.content:
                if raw.startswith(b"data: {") and b'"content":"tok' in raw:
                    arrivals.append(time.monotonic() - t0)
    assert len(arrivals) == 3
    assert 0.19 < arrivals[0] < 0.4
    assert arrivals[2] - arrivals[0] >= 0.095


async def test_concurrent_requests_keep_their_own_options(fake: FakeUpstream) -> None:
    async with oai(fake) as client:
        results = await asyncio.gather(
            *(
                client.chat.completions.create(
                    model=fake_model("gpt-fake", tokens=n, gap_ms=5, tag=f"c{n}"), messages=USER
                )
                for n in (1, 2, 3, 4)
            )
        )
    assert [r.usage.completion_tokens for r in results if r.usage] == [1, 2, 3, 4]
    for n in (1, 2, 3, 4):
        [rec] = await fake.requests(tag=f"c{n}")
        assert rec["tokens_sent"] == n


async def test_defaults_and_reset(fake: FakeUpstream) -> None:
    await fake.set_defaults(tokens=2, tag="d")
    async with oai(fake) as client:
        first = await client.chat.completions.create(model="gpt-fake", messages=USER)
        await fake.reset()
        second = await client.chat.completions.create(model="gpt-fake", messages=USER)
    assert first.choices[0].message.content == "tok0 tok1 "
    assert second.usage is not None
    assert second.usage.completion_tokens == 8
    assert [r["tag"] for r in await fake.requests()] == [None]
    with pytest.raises(ValueError, match="unknown fake option"):
        await fake.set_defaults(bogus=1)
    with pytest.raises(TimeoutError):
        await fake.wait_closed("never", timeout=0.1)


async def test_unpaced_stream_is_cheap(fake: FakeUpstream) -> None:
    body = {"model": fake_model("gpt-fake", tokens=512), "messages": USER, "stream": True}
    async with aiohttp.ClientSession() as http:
        durations = []
        for _ in range(3):  # the first run warms up the connection
            t0 = time.monotonic()
            async with http.post(f"{fake.openai_base}/chat/completions", json=body) as resp:
                payload = await resp.read()
            durations.append(time.monotonic() - t0)
    assert payload.count(b'"content":"tok') == 512
    assert payload.endswith(b"data: [DONE]\n\n")
    # Typically ~10 ms; the bound leaves room for a loaded CI machine.
    assert min(durations) < 0.1, durations


async def test_stall_delays_only_the_final_chunk(fake: FakeUpstream) -> None:
    body = {"model": fake_model("gpt-fake", tokens=2, stall_ms=200), "messages": USER, "stream": True}
    stamps: dict[str, float] = {}
    async with aiohttp.ClientSession() as http:
        t0 = time.monotonic()
        async with http.post(f"{fake.openai_base}/chat/completions", json=body) as resp:
            async for raw in resp.content:
                if b'"content":"tok1 ' in raw:
                    stamps["last_token"] = time.monotonic() - t0
                elif b'"finish_reason":"stop"' in raw:
                    stamps["finish"] = time.monotonic() - t0
    assert stamps["last_token"] < 0.1
    assert stamps["finish"] - stamps["last_token"] >= 0.19


async def test_unknown_routes_answer_like_openai(fake: FakeUpstream) -> None:
    async with oai(fake) as client:
        with pytest.raises(openai.NotFoundError):
            await client.models.retrieve("nope")
        assert (await client.models.retrieve("gpt-fake")).owned_by == "system"
    async with aiohttp.ClientSession() as http, http.post(f"{fake.openai_base}/responses", json={}) as resp:
        assert resp.status == 404
        error = (await resp.json())["error"]
    assert error["type"] == "invalid_request_error"
    assert [r["status"] for r in await fake.requests()] == [404, 200, 404]
