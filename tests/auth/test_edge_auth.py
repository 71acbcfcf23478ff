"""Auth through the edge as clients meet it: the OpenAI SDK with a forge API key (working, refused for a scope or a
model), and the edge deployed apart from the core (its calls cross a gRPC channel with the same credentials)."""

from __future__ import annotations

import aiohttp
import grpc
import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam

from forge_rpc.server.app import ForgeApp
from forge_rpc.testing import running_forge
from tests.auth.conftest import Accounts, secured_config, secured_edge
from tests.fakes import FakeUpstream

pytestmark = pytest.mark.asyncio

HI: list[ChatCompletionMessageParam] = [{"role": "user", "content": "hi"}]


def sdk(app: ForgeApp, key: str) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(api_key=key, base_url=f"http://127.0.0.1:{app.http_port}/v1", max_retries=0)


async def test_the_openai_sdk_with_a_forge_key(secured: ForgeApp, accounts: Accounts) -> None:
    session = await accounts.new_user()
    key = (await accounts.new_key(session, scopes=["chat"])).secret
    async with sdk(secured, key) as client:
        answer = await client.chat.completions.create(model="fake", messages=HI)
        assert answer.choices[0].message.content
        stream = await client.chat.completions.create(model="fake", messages=HI, stream=True)
        assert [chunk async for chunk in stream]
        assert [m.id async for m in client.models.list()]  # listing models is part of "chat"
        embedded = await client.embeddings.create(model="", input=["hello"])
        assert embedded.data[0].embedding


async def test_the_openai_sdk_sees_403_for_a_scope_or_a_model(secured: ForgeApp, accounts: Accounts) -> None:
    session = await accounts.new_user()
    rag_only = (await accounts.new_key(session, scopes=["rag"])).secret
    async with sdk(secured, rag_only) as client:
        with pytest.raises(openai.PermissionDeniedError) as info:
            await client.chat.completions.create(model="fake", messages=HI)
        assert info.value.code == "scope_missing"
    one_model = (await accounts.new_key(session, allowed_models=["fake"])).secret
    async with sdk(secured, one_model) as client:
        with pytest.raises(openai.PermissionDeniedError) as info:
            await client.chat.completions.create(model="fake/gpt-x", messages=HI)
        assert info.value.code == "model_not_allowed"
        with pytest.raises(openai.PermissionDeniedError):
            await client.chat.completions.create(model="fake/gpt-x", messages=HI, stream=True)


async def test_auth_holds_with_the_edge_deployed_apart(fake: FakeUpstream) -> None:
    async with running_forge(secured_config(fake), split=True, edge_config=secured_edge()) as app:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{app.grpc_port}") as channel:
            token = (await Accounts(channel, app).new_user()).access_token
        async with aiohttp.ClientSession(base_url=f"http://127.0.0.1:{app.http_port}") as http:
            async with http.get("/api/v1/models") as resp:
                assert resp.status == 401
            async with http.get("/api/v1/models", headers={"Authorization": f"Bearer {token}"}) as resp:
                assert resp.status == 200
            with pytest.raises(aiohttp.WSServerHandshakeError) as info:
                await http.ws_connect("/ws")
            assert info.value.status == 401
            async with http.ws_connect("/ws", params={"token": token}) as ws:
                await ws.send_str('{"type": "ping"}')
                assert (await ws.receive_json(timeout=5)) == {"type": "pong"}
