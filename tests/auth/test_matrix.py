"""Every RPC of the method table with auth on, over gRPC and over every REST binding: without credentials and
with a bad token every non-public RPC is UNAUTHENTICATED (401); a user's token on an admin RPC is
PERMISSION_DENIED (403); an admin's token passes the policy everywhere (the RPC may then fail for its own
reasons — empty requests — but never for authentication or permission).

Each matrix runs on a forge of its own: admin calls with empty requests may change state (clearing analytics)."""

from __future__ import annotations

import asyncio
import dataclasses
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import grpc
import pytest
from forge.auth.v1.auth_pb2 import Session
from google.protobuf.message import Message

from forge_rpc.server.access import ACCESS, Level
from forge_rpc.server.app import ForgeApp
from forge_rpc.testing import running_forge
from gateway.invoke import MethodInfo, method_catalog
from gateway.transcode.rules import Binding, bindings
from tests.auth.conftest import Accounts, bearer, secured_config, secured_edge
from tests.fakes import FakeUpstream
from tests.rpc.rich_status import reason

pytestmark = pytest.mark.asyncio

OK = "OK"
CALL_TIMEOUT_S = 10.0
REFUSED = {"UNAUTHENTICATED", "PERMISSION_DENIED"}
BAD_TOKEN = bearer("eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.forged")
_VAR = re.compile(r"\{[^{}]+\}")


async def _nothing() -> AsyncIterator[Message]:
    return
    yield  # an empty client stream


async def grpc_outcome(channel: grpc.aio.Channel, info: MethodInfo, md: tuple[tuple[str, str], ...]) -> str:
    """The status code name (and reason) the RPC answers with an empty request; OK once a message arrives."""
    ser, de = info.request_type.SerializeToString, info.response_type.FromString
    name = info.full_name
    try:
        if info.client_streaming:
            await channel.stream_unary(name, ser, de)(_nothing(), metadata=md, timeout=CALL_TIMEOUT_S)
        elif info.server_streaming:
            call = channel.unary_stream(name, ser, de)(info.request_type(), metadata=md, timeout=CALL_TIMEOUT_S)
            async for _ in call:
                break
            call.cancel()
        else:
            await channel.unary_unary(name, ser, de)(info.request_type(), metadata=md, timeout=CALL_TIMEOUT_S)
    except grpc.aio.AioRpcError as err:
        code = err.code().name
        return f"{code}:{reason(err)}" if code in REFUSED else code
    return OK


@pytest.fixture
async def matrix_forge(fake: FakeUpstream, tmp_path: Path) -> AsyncIterator[ForgeApp]:
    await fake.reset()
    config = secured_config(fake)
    # A project directory users may name (the retrain monitor's default "." starts there): an empty request is
    # then refused for what it asks (not a git repository), not for who asks.
    config = dataclasses.replace(config, retrain=dataclasses.replace(config.retrain, project_roots=(tmp_path,)))
    async with running_forge(config, edge_config=secured_edge()) as app:
        yield app


async def _sessions(app: ForgeApp, channel: grpc.aio.Channel) -> tuple[Session, Session]:
    accounts = Accounts(channel, app)
    return await accounts.new_user(), await accounts.admin()


async def test_every_rpc_over_grpc(matrix_forge: ForgeApp) -> None:
    catalog = method_catalog()
    rpcs = [catalog[name] for name in matrix_forge.methods]
    assert len(rpcs) == len(catalog) and all(name in ACCESS for name in matrix_forge.methods)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{matrix_forge.grpc_port}") as channel:
        user_session, admin_session = await _sessions(matrix_forge, channel)
        user, admin = user_session.access_token, admin_session.access_token
        wrong: list[tuple[str, str, str]] = []
        for info in rpcs:
            level = ACCESS[info.full_name].level
            anonymous = await grpc_outcome(channel, info, ())
            bad = await grpc_outcome(channel, info, BAD_TOKEN)
            as_user = await grpc_outcome(channel, info, bearer(user))
            if level is Level.PUBLIC:
                checks = [("anonymous", anonymous, not anonymous.startswith(tuple(REFUSED)))]
            else:
                checks = [
                    ("anonymous", anonymous, anonymous == "UNAUTHENTICATED:CREDENTIALS_MISSING"),
                    ("bad token", bad, bad.startswith("UNAUTHENTICATED:")),
                ]
            if level is Level.ADMIN:
                checks.append(("user", as_user, as_user == "PERMISSION_DENIED:ADMIN_ONLY"))
            else:
                checks.append(("user", as_user, not as_user.startswith(tuple(REFUSED))))
            wrong += [(info.full_name, who, got) for who, got, ok in checks if not ok]
        # Admin last: its empty requests may clear data.
        for info in rpcs:
            as_admin = await grpc_outcome(channel, info, bearer(admin))
            if as_admin.startswith(tuple(REFUSED)):
                wrong.append((info.full_name, "admin", as_admin))
    assert not wrong


def concrete(binding: Binding, user_id: str) -> str:
    """The binding's path with its variables filled: `{user_id}` with the caller's own (naming another user is
    the servicer's business, not the policy's), the rest with a placeholder."""
    return _VAR.sub(lambda m: user_id if m.group(0).startswith("{user_id") else "x1", binding.template.doc_path)


async def http_status(
    http: aiohttp.ClientSession, binding: Binding, token: str | None, user_id: str = "x1"
) -> tuple[int, str]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    body: Any = {} if binding.body else None
    path = concrete(binding, user_id)
    async with asyncio.timeout(CALL_TIMEOUT_S):
        async with http.request(binding.http_method, path, json=body, headers=headers) as resp:
            if resp.status == 200:
                return 200, ""  # a live stream stays open: its status is all this needs
            error = await resp.json(content_type=None)
            return resp.status, str(error.get("code", ""))


async def test_every_rest_binding(matrix_forge: ForgeApp) -> None:
    all_bindings = list(bindings(method_catalog().values()))
    async with grpc.aio.insecure_channel(f"127.0.0.1:{matrix_forge.grpc_port}") as channel:
        user, admin = await _sessions(matrix_forge, channel)
    wrong: list[tuple[str, str, int, str]] = []
    async with aiohttp.ClientSession(base_url=f"http://127.0.0.1:{matrix_forge.http_port}") as http:
        for binding in all_bindings:
            where = f"{binding.http_method} {binding.template.text}"
            level = ACCESS[binding.info.full_name].level
            anonymous = await http_status(http, binding, None)
            bad = await http_status(http, binding, "forged.token.here")
            as_user = await http_status(http, binding, user.access_token, user.user.id)
            public = level is Level.PUBLIC
            checks = [
                ("anonymous", anonymous, anonymous[0] not in (401, 403) if public else anonymous[0] == 401),
                ("bad token", bad, public or bad[0] == 401),
                ("user", as_user, as_user[0] == 403 if level is Level.ADMIN else as_user[0] not in (401, 403)),
            ]
            wrong += [(where, who, *got) for who, got, ok in checks if not ok]
        for binding in all_bindings:
            as_admin = await http_status(http, binding, admin.access_token)
            if as_admin[0] in (401, 403):
                wrong.append((f"{binding.http_method} {binding.template.text}", "admin", *as_admin))
    assert not wrong
