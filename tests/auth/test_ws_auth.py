"""/ws with auth on: credentials checked at connect (401/403 before the upgrade) from a header, `?token=` or the
`bearer.<token>` subprotocol; streams shared only by sockets with the same credentials; a socket closed once its
credentials stop working; topics checked by the same access table as every RPC."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import grpc
import orjson
import pytest
from forge.auth.v1 import auth_pb2

from forge_rpc.server.app import ForgeApp
from forge_rpc.testing import running_forge
from gateway.ws import HUB
from tests.auth.conftest import Accounts, bearer, secured_config, secured_edge
from tests.fakes import FakeUpstream

pytestmark = pytest.mark.asyncio

Frame = dict[str, Any]


async def first_frame(ws: aiohttp.ClientWebSocketResponse, sub_id: str, topic: str = "service_status") -> Frame:
    """Subscribes and returns the subscription's first frame (an event, or its error)."""
    await ws.send_str(orjson.dumps({"type": "subscribe", "id": sub_id, "topic": topic, "params": {}}).decode())
    async with asyncio.timeout(10):
        while True:
            msg = await ws.receive()
            assert msg.type is aiohttp.WSMsgType.TEXT, msg
            frame: Frame = orjson.loads(msg.data)
            if frame.get("id") == sub_id:
                return frame


@pytest.fixture
async def http(secured: ForgeApp) -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(base_url=f"http://127.0.0.1:{secured.http_port}") as session:
        yield session


async def test_no_or_bad_credentials_are_refused_before_the_upgrade(
    http: aiohttp.ClientSession, accounts: Accounts
) -> None:
    refused: list[dict[str, Any]] = [
        {},
        {"headers": {"Authorization": "Bearer not-a-token"}},
        {"params": {"token": "fk_nope"}},
    ]
    for kwargs in refused:
        with pytest.raises(aiohttp.WSServerHandshakeError) as info:
            await http.ws_connect("/ws", **kwargs)
        assert info.value.status == 401, kwargs
    # Without the upgrade headers the same refusal shows its JSON body.
    async with http.get("/ws") as resp:
        assert resp.status == 401 and resp.headers["WWW-Authenticate"] == "Bearer"
        assert (await resp.json())["code"] == "CREDENTIALS_MISSING"

    session, admin = await accounts.new_user(), await accounts.admin()
    disable = auth_pb2.UpdateUserRequest(user_id=session.user.id, user=auth_pb2.User(disabled=True))
    await accounts.stub.UpdateUser(disable, metadata=bearer(admin.access_token))
    with pytest.raises(aiohttp.WSServerHandshakeError) as info:
        await http.ws_connect("/ws", headers={"Authorization": f"Bearer {session.access_token}"})
    assert info.value.status == 403


async def test_credentials_by_header_query_or_subprotocol(http: aiohttp.ClientSession, accounts: Accounts) -> None:
    token = (await accounts.new_user()).access_token
    ways: list[dict[str, Any]] = [
        {"headers": {"Authorization": f"Bearer {token}"}},
        {"params": {"token": token}},
        {"protocols": ("forge", f"bearer.{token}")},
    ]
    for kwargs in ways:
        async with http.ws_connect("/ws", **kwargs) as ws:
            frame = await first_frame(ws, "s")
            assert frame["type"] == "event" and frame["data"]["service"], (kwargs, frame)
            if "protocols" in kwargs:
                assert ws.protocol == "forge"  # selected; the token is never echoed


async def test_topics_follow_the_access_table(http: aiohttp.ClientSession, accounts: Accounts) -> None:
    session = await accounts.new_user()
    rag_key = (await accounts.new_key(session, scopes=["rag"])).secret
    async with http.ws_connect("/ws", headers={"Authorization": f"Bearer {session.access_token}"}) as ws:
        frame = await first_frame(ws, "p", "pull")  # pulling models is for admins
        assert frame["type"] == "error" and frame["error"]["code"] == "ADMIN_ONLY"
    async with http.ws_connect("/ws", headers={"X-Api-Key": rag_key}) as ws:
        frame = await first_frame(ws, "m", "metrics")
        assert frame["type"] == "error" and frame["error"]["code"] == "SCOPE_MISSING"


async def test_a_socket_closes_once_its_key_is_revoked(http: aiohttp.ClientSession, accounts: Accounts) -> None:
    session = await accounts.new_user()
    created = await accounts.new_key(session)
    async with http.ws_connect("/ws", headers={"X-Api-Key": created.secret}) as ws:
        assert (await first_frame(ws, "s"))["type"] == "event"
        revoke = auth_pb2.RevokeApiKeyRequest(key_id=created.api_key.id)
        await accounts.stub.RevokeApiKey(revoke, metadata=bearer(session.access_token))
        async with asyncio.timeout(10):  # the secured edge re-checks every 0.2 s
            while (msg := await ws.receive()).type is aiohttp.WSMsgType.TEXT:
                pass
        assert msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED), msg
        assert ws.close_code == 4401


async def test_streams_are_shared_only_between_the_same_credentials(fake: FakeUpstream) -> None:
    async with (
        running_forge(secured_config(fake), edge_config=secured_edge()) as app,
        grpc.aio.insecure_channel(f"127.0.0.1:{app.grpc_port}") as channel,
        aiohttp.ClientSession(base_url=f"http://127.0.0.1:{app.http_port}") as http,
    ):
        accounts = Accounts(channel, app)
        alice, bob = (await accounts.new_user()).access_token, (await accounts.new_user()).access_token
        assert app.edge is not None
        hub = app.edge.app[HUB]
        sockets = [
            await http.ws_connect("/ws", headers={"Authorization": f"Bearer {token}"}) for token in (alice, alice, bob)
        ]
        try:
            for i, ws in enumerate(sockets):
                assert (await first_frame(ws, f"s{i}"))["type"] == "event"
            assert len(hub) == 2  # alice's two sockets share one upstream stream; bob has his own
        finally:
            for ws in sockets:
                await ws.close()
