"""Headers every edge answer carries: the request id (echoed), which route answered, and forge's own overhead."""

from __future__ import annotations

import aiohttp
import pytest

from tests.fakes import fake_model

pytestmark = pytest.mark.asyncio

CHAT = {"messages": [{"role": "user", "content": "hi"}]}


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/api/v1/chat/completions"])
async def test_unary_chat_names_the_route_and_the_overhead(http: aiohttp.ClientSession, path: str) -> None:
    body = {**CHAT, "model": fake_model("fake/gpt-fake", tokens=3, ttft_ms=200)}
    if path.startswith("/api"):
        body = {"model": body["model"], "messages": CHAT["messages"]}
    async with http.post(path, json=body, headers={"x-request-id": "edge-hdr-1"}) as resp:
        assert resp.status == 200, await resp.text()
        headers = resp.headers
    assert headers["x-request-id"] == "edge-hdr-1"
    assert headers["x-forge-provider"] == "openai"
    assert headers["x-forge-model"].startswith("gpt-fake")
    upstream = float(headers["x-forge-upstream-ms"])
    overhead = float(headers["x-forge-overhead-ms"])
    assert upstream >= 200  # the fake waited ttft_ms before answering
    assert 0 <= overhead < upstream


async def test_request_id_is_generated_when_absent(http: aiohttp.ClientSession) -> None:
    async with http.get("/api/v1/models") as resp:
        assert resp.status == 200
        assert len(resp.headers["x-request-id"]) == 32
        assert float(resp.headers["x-forge-overhead-ms"]) >= 0
