"""Auth fixtures: a forge with auth on (bootstrap admin, a fixed JWT secret, /ws requiring credentials), gRPC
helpers to register, log in and call with a token, and a database of its own for store tests.

The database is shared by every forge of the session, so users are created with unique names."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import grpc
import psycopg
import pytest_asyncio
from forge.auth.v1 import auth_pb2, auth_pb2_grpc
from psycopg import sql

from forge_rpc.adapters.store import migrate
from forge_rpc.server.app import ForgeApp
from forge_rpc.server.config import AuthConfig, ForgeConfig
from forge_rpc.testing import running_forge
from gateway.keys import EdgeConfig
from tests.conftest import forge_config
from tests.fakes import FakeUpstream

SECRET = "test-signing-key-" + "0123456789abcdef" * 3
PASSWORD = "correct horse battery staple"
T = TypeVar("T")
Metadata = tuple[tuple[str, str], ...]


def unique(prefix: str = "user") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def secured_config(fake: FakeUpstream, **auth: Any) -> ForgeConfig:
    """forge_config(fake) with auth on and a fresh bootstrap admin (PASSWORD)."""
    options: dict[str, Any] = {
        "enabled": True,
        "jwt_secret": SECRET,
        "admin_username": unique("admin"),
        "admin_password": PASSWORD,
        **auth,
    }
    return dataclasses.replace(forge_config(fake), auth=AuthConfig(**options))


def secured_edge(**options: Any) -> EdgeConfig:
    return EdgeConfig(auth_required=True, **options)


def bearer(token: str) -> Metadata:
    return (("authorization", f"Bearer {token}"),)


async def refusal(call: Awaitable[Any]) -> grpc.aio.AioRpcError:
    """The error a call fails with (the test fails if it succeeds)."""
    try:
        await call
    except grpc.aio.AioRpcError as err:
        return err
    raise AssertionError("the call succeeded")


class Accounts:
    """AuthService over gRPC, as a client uses it."""

    def __init__(self, channel: grpc.aio.Channel, app: ForgeApp) -> None:
        self.channel = channel
        self.stub = auth_pb2_grpc.AuthServiceStub(channel)
        self.app = app

    async def register(self, username: str | None = None, md: Metadata = ()) -> auth_pb2.RegisterResponse:
        request = auth_pb2.RegisterRequest(username=username or unique(), password=PASSWORD)
        return await self.stub.Register(request, metadata=md)

    async def login(self, username: str, password: str = PASSWORD, md: Metadata = ()) -> auth_pb2.Session:
        return await self.stub.Login(auth_pb2.LoginRequest(username=username, password=password), metadata=md)

    async def new_user(self) -> auth_pb2.Session:
        """A registered, logged-in user ("user" role)."""
        registered = await self.register()
        return await self.login(registered.user.username)

    async def admin(self) -> auth_pb2.Session:
        name = self.app.config.auth.admin_username
        assert name is not None
        return await self.login(name)

    async def new_key(self, session: auth_pb2.Session, **fields: Any) -> auth_pb2.CreateApiKeyResponse:
        request = auth_pb2.CreateApiKeyRequest(name=fields.pop("name", "test"), **fields)
        return await self.stub.CreateApiKey(request, metadata=bearer(session.access_token))


@pytest_asyncio.fixture(scope="module")
async def secured(fake: FakeUpstream) -> AsyncIterator[ForgeApp]:
    """forge with auth on, its edge in process; /ws re-checks credentials every 0.2 s."""
    await fake.reset()
    async with running_forge(secured_config(fake), edge_config=secured_edge(ws_recheck_s=0.2)) as app:
        yield app


@pytest_asyncio.fixture
async def accounts(secured: ForgeApp) -> AsyncIterator[Accounts]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{secured.grpc_port}") as channel:
        yield Accounts(channel, secured)


@pytest_asyncio.fixture
async def db(secured: ForgeApp) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
    """A connection to the database the secured forge uses, to look at what is stored."""
    url = secured.config.storage.database_url
    assert url is not None
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        yield conn


@pytest_asyncio.fixture
async def fresh_database(apps_database: str) -> Callable[[], Awaitable[str]]:
    """Makes an empty, migrated database in the session's cluster (for "first account" and store tests)."""

    async def make() -> str:
        name = f"auth_{uuid.uuid4().hex[:16]}"
        async with await psycopg.AsyncConnection.connect(apps_database, autocommit=True) as conn:
            await conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        url = psycopg.conninfo.make_conninfo(apps_database, dbname=name)
        await migrate(url)
        return url

    return make
