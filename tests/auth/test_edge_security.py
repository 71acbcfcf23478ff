"""Edge security basics (auth off, the embedded default, unless a test says otherwise): security headers on
every kind of answer, request-line/header/body limits with JSON errors, CORS and the Origin check, model names."""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import grpc
import openai
import pytest
from forge.models.v1 import models_pb2, models_pb2_grpc

from forge_rpc.server.app import ForgeApp
from forge_rpc.testing import running_forge
from gateway.keys import EdgeConfig
from tests.conftest import forge_config
from tests.fakes import FakeUpstream, fake_model
from tests.rpc.rich_status import status_of

pytestmark = pytest.mark.asyncio

CHAT = {"model": "fake", "messages": [{"role": "user", "content": "hi"}]}
APP_ORIGIN = "https://app.example"


@asynccontextmanager
async def edge(fake: FakeUpstream, **options: Any) -> AsyncIterator[tuple[aiohttp.ClientSession, ForgeApp]]:
    await fake.reset()
    async with (
        running_forge(forge_config(fake), edge_config=EdgeConfig(**options)) as app,
        aiohttp.ClientSession(base_url=f"http://127.0.0.1:{app.http_port}") as http,
    ):
        yield http, app


def assert_secure(headers: Any, csp: str = "default-src 'none'; frame-ancestors 'none'") -> None:
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["X-Frame-Options"] == "DENY"
    assert headers["Referrer-Policy"] == "no-referrer"
    assert headers["Content-Security-Policy"] == csp


async def test_security_headers_on_json_errors_and_streams(fake: FakeUpstream) -> None:
    async with edge(fake) as (http, _):
        async with http.get("/api/v1/models") as resp:
            assert resp.status == 200
            assert_secure(resp.headers)
        async with http.get("/api/v1/no-such-thing") as resp:
            assert resp.status == 404
            assert_secure(resp.headers)
        body = {**CHAT, "model": fake_model("fake/gpt-fake", tokens=3), "stream": True}
        async with http.post("/v1/chat/completions", json=body) as resp:
            assert resp.status == 200 and resp.content_type == "text/event-stream"
            assert_secure(resp.headers)  # sent before the first byte
            assert b"[DONE]" in await resp.read()


async def test_the_docs_page_runs_only_its_own_scripts(fake: FakeUpstream) -> None:
    async with edge(fake) as (http, _), http.get("/docs") as resp:
        assert resp.status == 200 and resp.content_type == "text/html"
        page = await resp.read()
        csp = resp.headers["Content-Security-Policy"]
    inline = re.search(rb"<script>(.*?)</script>", page, re.DOTALL)
    assert inline is not None
    digest = base64.b64encode(hashlib.sha256(inline.group(1)).digest()).decode()
    script_src = next(d for d in csp.split(";") if d.strip().startswith("script-src"))
    assert f"'sha256-{digest}'" in script_src and "unsafe-inline" not in script_src
    assert "frame-ancestors 'none'" in csp and "object-src 'none'" in csp


async def test_oversized_requests_get_json_errors(fake: FakeUpstream) -> None:
    async with edge(fake, max_body_bytes=1024) as (http, _):
        async with http.get("/api/v1/models", headers={"X-Big": "x" * (20 * 1024)}) as resp:
            assert resp.status == 431
            assert (await resp.json())["code"] == "REQUEST_HEADERS_TOO_LARGE"
        many = {f"X-H{i}": "v" for i in range(150)}
        async with http.get("/api/v1/models", headers=many) as resp:
            assert resp.status == 431
        async with http.get("/api/v1/models", params={"q": "x" * (9 * 1024)}) as resp:
            assert resp.status == 414
            assert (await resp.json())["code"] == "URI_TOO_LONG"
        async with http.post("/api/v1/chat", json={"message": "x" * 2048, "model": "fake"}) as resp:
            assert resp.status == 413
            assert (await resp.json())["code"] == "PAYLOAD_TOO_LARGE"
        async with http.get("/api/v1/models", headers={"X-Fine": "x" * 4096}) as resp:
            assert resp.status == 200  # under the limits nothing changes


async def test_cross_origin_requests_are_closed_by_default(fake: FakeUpstream) -> None:
    async with edge(fake) as (http, app):
        async with http.get("/api/v1/models", headers={"Origin": "https://evil.example"}) as resp:
            assert resp.status == 403 and "Access-Control-Allow-Origin" not in resp.headers
            assert (await resp.json())["code"] == "ORIGIN_NOT_ALLOWED"
        # A page cannot drive the local operator's forge with a request that needs no preflight either.
        form = {"Origin": "https://evil.example", "Content-Type": "text/plain"}
        async with http.post("/api/v1/analytics:clearAll", data="{}", headers=form) as resp:
            assert resp.status == 403
        preflight = {"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"}
        async with http.options("/v1/chat/completions", headers=preflight) as resp:
            assert resp.status == 403 and "Access-Control-Allow-Origin" not in resp.headers
        with pytest.raises(aiohttp.WSServerHandshakeError) as info:  # no cross-site WebSocket hijacking
            await http.ws_connect("/ws", origin="https://evil.example")
        assert info.value.status == 403
        # The edge's own pages (same origin) are not cross-origin.
        async with http.get("/api/v1/models", headers={"Origin": f"http://127.0.0.1:{app.http_port}"}) as resp:
            assert resp.status == 200
        behind_proxy = {"Origin": "https://forge.example", "X-Forwarded-Host": "forge.example"}
        async with http.get("/api/v1/models", headers=behind_proxy) as resp:
            assert resp.status == 200 and "Access-Control-Allow-Origin" not in resp.headers


async def test_configured_origins_may_call(fake: FakeUpstream) -> None:
    async with edge(fake, cors_origins=(APP_ORIGIN,)) as (http, _):
        preflight = {
            "Origin": APP_ORIGIN,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type",
        }
        async with http.options("/v1/chat/completions", headers=preflight) as resp:
            assert resp.status == 204
            assert resp.headers["Access-Control-Allow-Origin"] == APP_ORIGIN
            assert "POST" in resp.headers["Access-Control-Allow-Methods"]
            assert resp.headers["Access-Control-Allow-Headers"] == "authorization, content-type"
        async with http.post("/v1/chat/completions", json=CHAT, headers={"Origin": APP_ORIGIN}) as resp:
            assert resp.status == 200
            assert resp.headers["Access-Control-Allow-Origin"] == APP_ORIGIN
            assert resp.headers["Access-Control-Expose-Headers"] == "*" and "Origin" in resp.headers["Vary"]
        async with http.get("/api/v1/models", headers={"Origin": "https://other.example"}) as resp:
            assert resp.status == 403


async def test_model_names_are_validated_on_every_transport(fake: FakeUpstream) -> None:
    async with edge(fake) as (http, app):
        bad = {"model": "gpt 4<script>", "message": "hi"}
        async with http.post("/api/v1/chat", json=bad) as resp:
            assert resp.status == 400
            body = await resp.json()
        assert body["code"] == "INVALID_ARGUMENT" and "chat.model" in body["detail"]

        base = f"http://127.0.0.1:{app.http_port}/v1"
        client = openai.AsyncOpenAI(api_key="unused", base_url=base, max_retries=0)
        async with client:
            with pytest.raises(openai.BadRequestError) as info:
                await client.chat.completions.create(model="x" * 300, messages=[{"role": "user", "content": "hi"}])
        assert info.value.status_code == 400

        async with grpc.aio.insecure_channel(f"127.0.0.1:{app.grpc_port}") as channel:
            stub = models_pb2_grpc.ModelsServiceStub(channel)
            with pytest.raises(grpc.aio.AioRpcError) as err:
                async for _ in stub.PullModel(models_pb2.PullModelRequest(model="../../api/delete")):
                    pass
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert status_of(err.value).message.startswith("model:")
