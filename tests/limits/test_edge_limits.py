"""The edge's side of rate limits, with the core in process and over a channel (split): `x-ratelimit-*` headers
on unary answers and on streams before their first byte (a heartbeat's too), 429 with `retry-after` and the
same headers, in OpenAI's shape on /v1 and the edge's on the REST routes."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager

import aiohttp
import pytest

from forge_rpc.domain.limits import Rates
from forge_rpc.server.config import ForgeConfig
from forge_rpc.server.pipeline import PREFILL_HEADERS_S
from forge_rpc.testing import running_forge
from gateway.keys import EdgeConfig
from tests.fakes import FakeUpstream, fake_model
from tests.limits.conftest import limited

pytestmark = pytest.mark.asyncio

USER = [{"role": "user", "content": "hello there world"}]
STREAM = "/api/v1/chat/completions:stream"


@pytest.fixture(params=["local", "split"])
def split(request: pytest.FixtureRequest) -> bool:
    return bool(request.param == "split")


@asynccontextmanager
async def edge(config: ForgeConfig, split: bool, heartbeat_s: float = 15.0) -> AsyncIterator[aiohttp.ClientSession]:
    async with (
        running_forge(config, split=split, edge_config=EdgeConfig(sse_heartbeat_s=heartbeat_s)) as app,
        aiohttp.ClientSession(base_url=f"http://127.0.0.1:{app.http_port}") as http,
    ):
        yield http


def assert_rate_headers(h: Mapping[str, str], limit: int, remaining: int) -> None:
    assert h["x-ratelimit-limit-requests"] == str(limit)
    assert h["x-ratelimit-remaining-requests"] == str(remaining)
    assert h["x-ratelimit-reset-requests"].endswith("s")
    # Seed 003's spelling, the reset as a Unix time.
    assert (h["x-ratelimit-limit"], h["x-ratelimit-remaining"]) == (str(limit), str(remaining))
    assert 0 <= int(h["x-ratelimit-reset"]) - time.time() <= 61


async def test_openai_unary_headers_then_429(fake: FakeUpstream, split: bool) -> None:
    async with edge(limited(fake, anonymous=Rates(rpm=2)), split) as http:
        body = {"model": "fake", "messages": USER}
        for remaining in (1, 0):
            async with http.post("/v1/chat/completions", json=body) as resp:
                assert resp.status == 200, await resp.text()
                assert_rate_headers(resp.headers, 2, remaining)
        async with http.post("/v1/chat/completions", json=body) as resp:
            assert resp.status == 429
            error = (await resp.json())["error"]
            headers = resp.headers
    assert (error["type"], error["code"]) == ("rate_limit_error", "rate_limit_exceeded")
    assert "2 requests per minute" in error["message"]
    assert 1 <= int(headers["retry-after"]) <= 30  # one request's share of the minute, rounded up
    assert_rate_headers(headers, 2, 0)


async def test_rest_routes_carry_the_headers_and_answer_429(fake: FakeUpstream, split: bool) -> None:
    async with edge(limited(fake, anonymous=Rates(rpm=1)), split) as http:
        async with http.get("/api/v1/models") as resp:
            assert resp.status == 200
            assert_rate_headers(resp.headers, 1, 0)
        async with http.get("/api/v1/cache/stats") as resp:  # another RPC: every RPC counts
            assert resp.status == 429
            body = await resp.json()
            assert body["code"] == "RATE_LIMIT_EXCEEDED"
            assert int(resp.headers["retry-after"]) >= 1
            assert resp.headers["x-ratelimit-remaining-requests"] == "0"
        # Health probes are exempt.
        async with http.get("/health") as resp:
            assert resp.status == 200


async def test_openai_stream_headers_arrive_before_the_first_byte(fake: FakeUpstream, split: bool) -> None:
    async with edge(limited(fake, anonymous=Rates(rpm=5, tpm=1000)), split) as http:
        model = fake_model("fake/gpt-fake", tokens=4, ttft_ms=200)
        body = {"model": model, "messages": USER, "stream": True, "max_tokens": 50}
        async with http.post("/v1/chat/completions", json=body) as resp:
            assert resp.status == 200
            assert_rate_headers(resp.headers, 5, 4)
            assert resp.headers["x-ratelimit-limit-tokens"] == "1000"
            assert resp.headers["x-ratelimit-remaining-tokens"] == str(1000 - 13 - 50)
            raw = await resp.read()
    assert raw.startswith(b"data: ") and raw.endswith(b"data: [DONE]\n\n")


@pytest.mark.parametrize("path", ["/v1/chat/completions", STREAM])
async def test_a_heartbeat_before_the_first_token_carries_the_headers(
    fake: FakeUpstream, split: bool, path: str
) -> None:
    # The first ping comes after the core's prefill grace (PREFILL_HEADERS_S), which sent the headers without
    # waiting for a token, and before the first token.
    heartbeat_s = PREFILL_HEADERS_S + 0.2
    async with edge(limited(fake, anonymous=Rates(rpm=5)), split, heartbeat_s=heartbeat_s) as http:
        model = fake_model("fake/gpt-fake", tokens=2, ttft_ms=int(1000 * heartbeat_s) + 600)
        body = {"model": model, "messages": USER, **({"stream": True} if path.startswith("/v1") else {})}
        headers = {"accept": "text/event-stream"}
        async with http.post(path, json=body, headers=headers) as resp:
            assert resp.status == 200
            first = await resp.content.readuntil(b"\n\n")
            assert first == b": ping\n\n"  # the response started with a heartbeat…
            assert_rate_headers(resp.headers, 5, 4)  # …and its headers already held the limits
            await resp.read()


async def test_rest_ndjson_stream_headers(fake: FakeUpstream, split: bool) -> None:
    async with edge(limited(fake, anonymous=Rates(rpm=3)), split) as http:
        async with http.post(STREAM, json={"model": "fake", "messages": USER}) as resp:
            assert resp.status == 200
            assert resp.headers["content-type"].startswith("application/x-ndjson")
            assert_rate_headers(resp.headers, 3, 2)
            await resp.read()


@pytest.mark.parametrize("path", ["/v1/chat/completions", STREAM])
async def test_a_refused_stream_is_a_plain_429(fake: FakeUpstream, split: bool, path: str) -> None:
    async with edge(limited(fake, anonymous=Rates(rpm=1)), split) as http:
        body = {"model": "fake", "messages": USER, **({"stream": True} if path.startswith("/v1") else {})}
        async with http.post(path, json=body) as resp:
            assert resp.status == 200
            await resp.read()
        async with http.post(path, json=body, headers={"accept": "text/event-stream"}) as resp:
            assert resp.status == 429
            assert resp.headers["content-type"].startswith("application/json")
            assert int(resp.headers["retry-after"]) >= 1
            assert resp.headers["x-ratelimit-limit-requests"] == "1"
            assert resp.headers["x-ratelimit-remaining-requests"] == "0"


async def test_route_headers_on_unary_answers(fake: FakeUpstream, split: bool) -> None:
    async with edge(limited(fake), split) as http:
        async with http.post("/api/v1/chat/completions", json={"model": "fake", "messages": USER}) as resp:
            assert resp.status == 200
            assert resp.headers["x-forge-attempts"] == "1"
            assert resp.headers["x-forge-deployment"]
        async with http.post("/v1/chat/completions", json={"model": "fake", "messages": USER}) as resp:
            assert resp.status == 200
            assert resp.headers["x-forge-attempts"] == "1"
            assert "x-ratelimit-limit-requests" not in resp.headers  # no limit configured, none reported


async def test_forwarded_for_is_believed_only_from_a_local_proxy(fake: FakeUpstream) -> None:
    # The test client connects from 127.0.0.1, a local proxy's address: its X-Forwarded-For names the client,
    # and each client gets its own bucket.
    async with edge(limited(fake, anonymous=Rates(rpm=1)), split=False) as http:
        for client in ("203.0.113.1", "203.0.113.2"):
            async with http.get("/api/v1/models", headers={"x-forwarded-for": client}) as resp:
                assert resp.status == 200
        async with http.get("/api/v1/models", headers={"x-forwarded-for": "203.0.113.1"}) as resp:
            assert resp.status == 429
