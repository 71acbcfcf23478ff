"""A real forge over the session's PostgreSQL, with the fake upstream's OpenAI models and its Ollama behind it.

Every forge in the session shares one database, and the default model is one row for all of them: each test
starts and ends with no stored default, so neither a leftover here nor one from elsewhere changes what "no
model named" means in another test. Model names are unique per test where rows stay behind.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import TypeAlias

import aiohttp
import grpc
import psycopg
import pytest_asyncio
from forge.models.v1 import models_pb2, models_pb2_grpc

from forge_rpc.adapters.store import migrate
from forge_rpc.server.app import ForgeApp
from forge_rpc.testing import running_forge
from tests.conftest import forge_config
from tests.fakes import FakeUpstream

# The async stub type exists only in the generated .pyi.
Stub: TypeAlias = "models_pb2_grpc.ModelsServiceAsyncStub"


def unique(prefix: str = "repo") -> str:
    """An Ollama-style name (with a tag, so the fake Ollama keeps it as given) no other test uses."""
    return f"{prefix}-{uuid.uuid4().hex[:10]}:1b"


async def clear_default(url: str) -> None:
    await migrate(url)  # the table exists before the first forge of the session starts
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        await conn.execute("UPDATE model_preferences SET is_default = false WHERE is_default")


async def sql_rows(url: str, query: str, params: list[object] | None = None) -> list[tuple[object, ...]]:
    """Rows of a query run outside forge (none for a statement that returns none)."""
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        cur = await conn.execute(query.encode(), params)
        return await cur.fetchall() if cur.description is not None else []


@pytest_asyncio.fixture
async def no_default(apps_database: str) -> AsyncIterator[str]:
    """The apps database URL, with no stored default before and after the test."""
    await clear_default(apps_database)
    yield apps_database
    await clear_default(apps_database)


@pytest_asyncio.fixture
async def app(fake: FakeUpstream, no_default: str) -> AsyncIterator[ForgeApp]:
    await fake.reset()
    async with running_forge(forge_config(fake)) as forge:
        yield forge


@pytest_asyncio.fixture
async def stub(app: ForgeApp) -> AsyncIterator[Stub]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{app.grpc_port}") as channel:
        yield models_pb2_grpc.ModelsServiceStub(channel)


@pytest_asyncio.fixture
async def http(app: ForgeApp) -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(base_url=f"http://127.0.0.1:{app.http_port}") as session:
        yield session


async def pull(stub: Stub, name: str) -> None:
    """Into the fake Ollama through forge (which refreshes its model list when the pull is done)."""
    updates = [u async for u in stub.PullModel(models_pb2.PullModelRequest(model=name))]
    assert updates[-1].done


async def ollama_delete(fake: FakeUpstream, name: str) -> None:
    """Straight at the fake Ollama, as `ollama rm` would: forge learns of it only by looking again."""
    async with aiohttp.ClientSession() as session:
        async with session.delete(f"{fake.base_url}/api/delete", json={"model": name}) as resp:
            assert resp.status == 200, await resp.text()


async def all_models(stub: Stub) -> dict[str, models_pb2.Model]:
    out: dict[str, models_pb2.Model] = {}
    token = ""
    while True:
        page = await stub.ListModels(models_pb2.ListModelsRequest(page_token=token))
        out.update((m.name, m) for m in page.models)
        token = page.next_page_token
        if not token:
            return out
