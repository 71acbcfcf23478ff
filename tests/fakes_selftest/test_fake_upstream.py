"""Self-test of the fake upstream, driven through the real client libraries.

If these pass, the fake speaks the wire formats well enough for the official
openai and ollama clients (and litellm, when installed) to accept it, and
its recordings are accurate enough for cancellation-latency assertions.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import AsyncGenerator, AsyncIterator, Mapping
from typing import Any, cast

import aiohttp
import httpx
import ollama
import openai
import pytest
import pytest_asyncio
from openai.types.chat import (
    ChatCompletionChunk,
    ChatCompletionMessageParam,
    ChatCompletionToolParam,
)

from tests.fakes import FakeUpstream, fake_model

# One fake process per module (spawning costs ~0.4 s, mostly importing
# aiohttp); tests share its event loop and get a reset fake each.
pytestmark = pytest.mark.asyncio(loop_scope="module")

# 3 prompt words; typed separately because the two SDKs want different types.
USER: list[ChatCompletionMessageParam] = [{"role": "user", "content": "hello there world"}]
OLLAMA_USER: list[Mapping[str, Any]] = [{"role": "user", "content": "hello there world"}]
TOOLS: list[ChatCompletionToolParam] = [
    {"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}
]


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def shared_fake() -> AsyncIterator[FakeUpstream]:
    async with FakeUpstream() as upstream:
        yield upstream


@pytest_asyncio.fixture(loop_scope="module")
async def fake(shared_fake: FakeUpstream) -> FakeUpstream:
    await shared_fake.reset()
    return shared_fake


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


# -- Ollama through the official client --------------------------------------


async def test_ollama_chat_stream_and_unary(fake: FakeUpstream) -> None:
    client = ollama.AsyncClient(host=fake.base_url)
    parts = [p async for p in await client.chat(model="llama3.2:1b", messages=OLLAMA_USER, stream=True)]
    unary = await client.chat(model=fake_model("anything", tokens=2), messages=OLLAMA_USER)
    gen = await client.generate(model="qwen2.5:0.5b", prompt="why is the sky blue")
    assert "".join(p.message.content or "" for p in parts) == "".join(f"tok{i} " for i in range(8))
    assert parts[-1].done is True
    assert parts[-1].done_reason == "stop"
    assert parts[-1].eval_count == 8
    assert parts[-1].prompt_eval_count == 3
    assert unary.message.content == "tok0 tok1 "
    assert unary.model == "anything"
    assert gen.response == "".join(f"tok{i} " for i in range(8))
    assert gen.context == []
    with pytest.raises(ollama.ResponseError) as missing:
        await client.chat(model="nope:1b", messages=OLLAMA_USER)
    assert missing.value.status_code == 404


async def test_ollama_models_pull_show_delete_embed(fake: FakeUpstream) -> None:
    await fake.set_defaults(pull_steps=3, pull_gap_ms=1)
    client = ollama.AsyncClient(host=fake.base_url)
    names = [m.model for m in (await client.list()).models]
    assert names == ["llama3.2:1b", "qwen2.5:0.5b"]
    shown = await client.show("llama3.2:1b")
    assert shown.details is not None
    assert shown.details.family == "llama"
    assert shown.capabilities == ["completion"]
    statuses = [p.status async for p in await client.pull("tinyllama", stream=True)]
    assert statuses[0] == "pulling manifest"
    assert statuses[-3:] == ["verifying sha256 digest", "writing manifest", "success"]
    assert len(statuses) == 1 + 2 * 3 + 3
    assert "tinyllama:latest" in [m.model for m in (await client.list()).models]
    assert (await client.delete("tinyllama")).status == "success"
    with pytest.raises(ollama.ResponseError) as gone:
        await client.delete("tinyllama")
    assert gone.value.status_code == 404
    with pytest.raises(ollama.ResponseError, match="file does not exist"):
        async for _ in await client.pull("doesnotexist", stream=True):
            pass
    with pytest.raises(ollama.ResponseError):
        await client.show("nope")
    emb = await client.embed(model="llama3.2:1b", input=["a", "b"])
    assert len(emb.embeddings) == 2
    assert len(emb.embeddings[0]) == 8
    assert await fake.pulls() == {"tinyllama:latest": 1, "doesnotexist:latest": 1}


async def test_ollama_concurrent_pulls_are_counted(fake: FakeUpstream) -> None:
    client = ollama.AsyncClient(host=fake.base_url)
    await asyncio.gather(client.pull("m1"), client.pull("m1"))
    assert (await fake.pulls())["m1:latest"] == 2
    assert [r["model"] for r in await fake.requests()] == ["m1", "m1"]


async def test_ollama_disconnect_mid_stream(fake: FakeUpstream) -> None:
    client = ollama.AsyncClient(host=fake.base_url)
    # The client returns an async generator; its aclose() drops the connection.
    stream = cast(
        AsyncGenerator[ollama.ChatResponse, None],
        await client.chat(
            model=fake_model("llama3.2:1b", tokens=100, gap_ms=20, tag="o"),
            messages=OLLAMA_USER,
            stream=True,
        ),
    )
    seen = 0
    async for _ in stream:
        seen += 1
        if seen == 3:
            break
    closed_at = time.monotonic()
    await stream.aclose()
    rec = await fake.wait_closed("o", timeout=2)
    assert rec["client_closed_early"] is True
    assert 3 <= rec["tokens_sent"] <= 5
    assert rec["ended"] - closed_at < 0.05


async def test_ollama_misc_routes(fake: FakeUpstream) -> None:
    async with aiohttp.ClientSession(base_url=fake.base_url) as http:
        async with http.get("/") as resp:
            assert await resp.text() == "Ollama is running"
        async with http.head("/") as resp:
            assert resp.status == 200
        async with http.get("/api/version") as resp:
            assert await resp.json() == {"version": "0.12.0"}
        async with http.get("/api/ps") as resp:
            assert await resp.json() == {"models": []}
        async with http.post("/api/embeddings", json={"model": "llama3.2:1b", "prompt": "x"}) as resp:
            assert len((await resp.json())["embedding"]) == 8
        async with http.post("/api/chat", json={"model": "llama3.2:1b", "messages": []}) as resp:
            assert (await resp.json())["done_reason"] == "load"


# -- Anthropic wire (raw, and through litellm when available) ---------------


async def test_anthropic_stream_events(fake: FakeUpstream) -> None:
    body: dict[str, Any] = {
        "model": fake_model("claude-fake", tokens=2),
        "max_tokens": 100,
        "messages": USER,
        "stream": True,
    }
    async with (
        aiohttp.ClientSession() as http,
        http.post(f"{fake.base_url}/v1/messages", json=body) as resp,
    ):
        text = await resp.text()
    events = [line.removeprefix("event: ") for line in text.splitlines() if line.startswith("event: ")]
    assert events == [
        "message_start",
        "content_block_start",
        "ping",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]


async def test_litellm_openai_and_anthropic(fake: FakeUpstream) -> None:
    # Offline: litellm would otherwise fetch its model-cost map at import.
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    litellm = pytest.importorskip("litellm")
    via_openai = await litellm.acompletion(
        model="openai/" + fake_model("gpt-fake", tokens=3),
        messages=USER,
        api_base=fake.openai_base,
        api_key="x",
    )
    assert via_openai.choices[0].message.content == "tok0 tok1 tok2 "
    via_anthropic = await litellm.acompletion(
        model="anthropic/" + fake_model("claude-fake", tokens=2),
        messages=USER,
        api_base=fake.base_url,
        api_key="x",
        stream=True,
    )
    text = "".join([c.choices[0].delta.content or "" async for c in via_anthropic])
    assert text == "tok0 tok1 "
