"""Self-test of the fake upstream's Anthropic wire, raw and through litellm."""

from __future__ import annotations

import os
from typing import Any

import aiohttp
import pytest

from tests.fakes import FakeUpstream, fake_model

pytestmark = pytest.mark.asyncio(loop_scope="module")

USER = [{"role": "user", "content": "hello there world"}]  # 3 words


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


async def test_anthropic_unary_and_bad_key(fake: FakeUpstream) -> None:
    body: dict[str, Any] = {"model": fake_model("claude-fake", tokens=5), "max_tokens": 3, "messages": USER}
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{fake.base_url}/v1/messages", json=body) as resp:
            message = await resp.json()
        async with http.post(f"{fake.base_url}/v1/messages", json=body, headers={"x-api-key": "bad-key"}) as resp:
            assert resp.status == 401
            denied = await resp.json()
    assert message["content"] == [{"type": "text", "text": "tok0 tok1 tok2 "}]
    assert message["stop_reason"] == "max_tokens"
    assert message["usage"]["input_tokens"] == 3
    assert message["usage"]["output_tokens"] == 3
    assert denied == {"type": "error", "error": {"type": "authentication_error", "message": "invalid x-api-key"}}
