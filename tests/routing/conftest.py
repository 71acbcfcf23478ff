"""RoutingService fixtures: a real forge (core + edge) in front of the fake upstream, over the session's
PostgreSQL, with the routing tables emptied around each test (every forge of the session shares them) and the
server key kept out of the home directory."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import grpc
import psycopg
import pytest_asyncio
from forge.routing.v1 import routing_pb2_grpc

from forge_rpc.adapters.store import migrate
from forge_rpc.server.app import ForgeApp
from forge_rpc.server.config import ForgeConfig, RoutingConfig
from forge_rpc.testing import running_forge
from tests.conftest import forge_config, storage_config
from tests.fakes import FakeUpstream

SECRET = "test-server-key-0123456789abcdefghijklmnopqrstuvwxyz"

# forge_config(fake)'s services, as the directory names them: one per distinct endpoint and key.
FAKE = "openai-1"  # `fake` and `fake/*`: the fake's OpenAI API with key sk-test
BADKEY = "openai-2"  # `badkey/*`: the same API with the key the fake rejects
DOWN = "openai-3"  # `down/*`: nothing listens there


async def clear_routing_tables() -> None:
    url = storage_config().database_url
    assert url is not None
    await migrate(url)
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        await conn.execute("SET lock_timeout = '5s'")
        try:
            await conn.execute("TRUNCATE routing_rules, provider_keys")
        except psycopg.errors.LockNotAvailable:
            cur = await conn.execute(
                "SELECT pid, application_name, state, xact_start, left(query, 200) FROM pg_stat_activity"
                " WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
            raise AssertionError(f"routing tables locked by: {await cur.fetchall()}") from None


async def table_rows(app: ForgeApp, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    assert app.pool is not None
    async with app.pool.connection() as conn, conn.cursor() as cur:
        await cur.execute(sql, params)
        rows: list[tuple[Any, ...]] = await cur.fetchall()
        return rows


def routing_config(fake: FakeUpstream, data_dir: Path, **routing: Any) -> ForgeConfig:
    base = forge_config(fake)
    return dataclasses.replace(base, data_dir=data_dir, routing=RoutingConfig(**{"secret_key": SECRET, **routing}))


@pytest_asyncio.fixture
async def routed(fake: FakeUpstream, tmp_path: Path) -> AsyncIterator[ForgeApp]:
    await fake.reset()
    await clear_routing_tables()
    try:
        async with running_forge(routing_config(fake, tmp_path)) as app:
            yield app
    finally:
        await clear_routing_tables()


@pytest_asyncio.fixture
async def routing(routed: ForgeApp) -> AsyncIterator[routing_pb2_grpc.RoutingServiceAsyncStub]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{routed.grpc_port}") as ch:
        yield routing_pb2_grpc.RoutingServiceStub(ch)


@pytest_asyncio.fixture
async def http(routed: ForgeApp) -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(base_url=f"http://127.0.0.1:{routed.http_port}") as session:
        yield session
