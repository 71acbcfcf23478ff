"""Self-test of the fake upstream's Ollama wire through the official ollama client."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator, Mapping
from typing import Any, cast

import aiohttp
import ollama
import pytest

from tests.fakes import FakeUpstream, fake_model

pytestmark = pytest.mark.asyncio(loop_scope="module")

OLLAMA_USER: list[Mapping[str, Any]] = [{"role": "user", "content": "hello there world"}]  # 3 words


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


async def test_ollama_options_length_failure_and_tool_call(fake: FakeUpstream) -> None:
    client = ollama.AsyncClient(host=fake.base_url)
    capped = await client.generate(model="llama3.2:1b", prompt="hi", options={"num_predict": 2})
    assert capped.response == "tok0 tok1 "
    assert capped.done_reason == "length"
    with pytest.raises(ollama.ResponseError) as busy:
        await client.chat(model=fake_model("llama3.2:1b", fail=503, retry_after=2), messages=OLLAMA_USER)
    assert busy.value.status_code == 503
    tools = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]
    parts = [
        p
        async for p in await client.chat(
            model=fake_model("llama3.2:1b", tool_call="f"), messages=OLLAMA_USER, tools=tools, stream=True
        )
    ]
    calls = parts[0].message.tool_calls
    assert calls is not None
    assert calls[0].function.name == "f"
    assert calls[0].function.arguments == {"x": 1}
    assert parts[-1].done is True
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            f"{fake.base_url}/api/chat",
            json={"model": fake_model("x", fail=429, retry_after=3), "messages": []},
        ) as resp,
    ):
        assert resp.status == 429
        assert resp.headers["Retry-After"] == "3"
        assert await resp.json() == {"error": "too many requests"}
