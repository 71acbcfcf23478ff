"""Ledger tests share the store suite's session PostgreSQL (one server); each module gets its own database."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any, NoReturn

import grpc
import pytest
import pytest_asyncio
from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

from forge_rpc.adapters.store import create_pool, migrate
from forge_rpc.domain.identity import LOCAL
from forge_rpc.services.context import principal
from tests.store.conftest import database, embedded_pg  # noqa: F401  # the session server and per-module DB

Pool = AsyncConnectionPool[AsyncConnection[Any]]


@pytest_asyncio.fixture(scope="module")
async def pool(database: str) -> AsyncIterator[Pool]:  # noqa: F811  # the imported fixture, by name
    await migrate(database)
    p = create_pool(database, min_size=1, max_size=4, timeout_s=2.0)
    await p.open(wait=True)
    yield p
    await p.close()


@pytest_asyncio.fixture
async def empty_ledger(pool: Pool) -> Pool:
    """The module's pool, with `usage_ledger` emptied first so every test counts from zero."""
    async with pool.connection() as conn:
        await conn.execute("TRUNCATE usage_ledger")
    return pool


async def count_rows(pool: Pool, where: str = "TRUE") -> int:
    async with pool.connection() as conn:
        cur = await conn.execute(f"SELECT count(*) FROM usage_ledger WHERE {where}")
        row = await cur.fetchone()
        assert row is not None
        return int(row[0])


class FakeContext:
    """The CallContext subset servicers use, for calling servicer methods directly."""

    def __init__(self, metadata: tuple[tuple[str, str], ...] = (), peer: str = "ipv4:127.0.0.1:5555") -> None:
        self.metadata = metadata
        self._peer = peer
        self.trailing: tuple[tuple[str, str | bytes], ...] = ()

    def invocation_metadata(self) -> tuple[tuple[str, str], ...]:
        return self.metadata

    def time_remaining(self) -> float | None:
        return None

    async def abort(self, code: grpc.StatusCode, details: str = "", trailing_metadata: Any = ()) -> NoReturn:
        raise AssertionError(f"abort {code} {details}")

    def set_trailing_metadata(self, trailing_metadata: Any) -> None:
        self.trailing = tuple(trailing_metadata)

    def peer(self) -> str:
        return self._peer

    def cancelled(self) -> bool:
        return False

    async def send_initial_metadata(self, initial_metadata: Any) -> None:
        self.initial = tuple(initial_metadata)


async def wait_for(predicate: Callable[[], Awaitable[bool]], timeout: float = 20.0, step: float = 0.05) -> None:
    import asyncio
    import time

    deadline = time.monotonic() + timeout
    while not await predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(step)


@pytest.fixture(autouse=True)
def local_operator() -> Iterator[None]:
    """Servicers called directly (no pipeline) run as the local operator, as every call does with auth off."""
    token = principal.set(LOCAL)
    yield
    principal.reset(token)
