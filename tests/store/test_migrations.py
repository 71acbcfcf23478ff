"""Migrations on real databases: from empty, re-run, concurrent runners, a failing migration, an edited one."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import psycopg
import pytest

from forge_rpc.adapters.store import Migration, MigrationError, load_migrations, migrate

TABLES = ("usage_ledger", "rag_namespaces", "rag_documents", "rag_chunks", "model_preferences", "jobs", "job_events")


async def _rows(url: str, query: str) -> list[tuple[object, ...]]:
    async with await psycopg.AsyncConnection.connect(url) as conn:
        return await (await conn.execute(query.encode())).fetchall()


def test_packaged_migrations_are_numbered_from_one() -> None:
    migrations = load_migrations()
    assert [m.version for m in migrations] == list(range(1, len(migrations) + 1))
    assert migrations[0].name == "initial"
    assert "CREATE TABLE usage_ledger" in migrations[0].sql


async def test_migrates_an_empty_database(fresh_database: Callable[[], Awaitable[str]]) -> None:
    url = await fresh_database()
    began = time.perf_counter()
    applied = await migrate(url)
    print(f"\nmigrate empty database: {(time.perf_counter() - began) * 1000:.0f} ms")

    assert applied == [m.version for m in load_migrations()]
    for table in TABLES:
        assert await _rows(url, f"SELECT to_regclass('{table}') IS NOT NULL") == [(True,)]
    history = await _rows(url, "SELECT version, name, checksum FROM schema_migrations ORDER BY version")
    assert history == [(m.version, m.name, m.checksum) for m in load_migrations()]


async def test_rerun_on_a_migrated_database_is_a_no_op(fresh_database: Callable[[], Awaitable[str]]) -> None:
    url = await fresh_database()
    await migrate(url)
    snapshot = "SELECT (SELECT count(*) FROM pg_class), (SELECT max(applied_at) FROM schema_migrations)"
    before = await _rows(url, snapshot)

    began = time.perf_counter()
    assert await migrate(url) == []
    print(f"\nmigrate up-to-date database: {(time.perf_counter() - began) * 1000:.1f} ms")
    assert await _rows(url, snapshot) == before


async def test_concurrent_runners_apply_each_migration_exactly_once(
    fresh_database: Callable[[], Awaitable[str]],
) -> None:
    url = await fresh_database()
    # A slow, non-idempotent extra migration widens the window in which runners overlap; 0001 itself is not
    # idempotent either (plain CREATE TABLE), so a double apply would fail loudly.
    counted = Migration(9001, "counted", "CREATE TABLE runs (n int); INSERT INTO runs VALUES (1); SELECT pg_sleep(.2);")
    migrations = [*load_migrations(), counted]

    results = await asyncio.gather(*(migrate(url, migrations) for _ in range(4)))

    assert sorted(results, key=len) == [[], [], [], [m.version for m in migrations]]
    assert await _rows(url, "SELECT count(*) FROM runs") == [(1,)]
    assert await _rows(url, "SELECT count(*) FROM schema_migrations") == [(len(migrations),)]


async def test_a_failing_migration_rolls_back_alone_and_releases_the_lock(
    fresh_database: Callable[[], Awaitable[str]],
) -> None:
    url = await fresh_database()
    good = Migration(9001, "good", "CREATE TABLE good (x int);")
    broken = Migration(9002, "broken", "CREATE TABLE half_done (x int); SELECT no_such_function();")

    with pytest.raises(MigrationError, match="9002_broken failed"):
        await migrate(url, [*load_migrations(), good, broken])

    assert await _rows(url, "SELECT to_regclass('good') IS NOT NULL, to_regclass('half_done') IS NULL") == [
        (True, True)
    ]
    assert await _rows(url, "SELECT max(version) FROM schema_migrations") == [(9001,)]
    fixed = Migration(9002, "broken", "CREATE TABLE half_done (x int);")
    # Would hang if the failed run had kept the advisory lock.
    assert await asyncio.wait_for(migrate(url, [*load_migrations(), good, fixed]), 5) == [9002]


async def test_an_edited_applied_migration_is_refused(fresh_database: Callable[[], Awaitable[str]]) -> None:
    url = await fresh_database()
    first = load_migrations()[0]
    await migrate(url, [first])
    edited = Migration(first.version, first.name, first.sql + "\nCREATE TABLE sneaked_in (x int);\n")

    with pytest.raises(MigrationError, match="changed after it was applied"):
        await migrate(url, [edited])


async def test_a_migration_only_a_newer_forge_knows_is_tolerated(fresh_database: Callable[[], Awaitable[str]]) -> None:
    url = await fresh_database()
    await migrate(url, [*load_migrations(), Migration(9001, "from_the_future", "SELECT 1;")])
    # An older replica during a rolling upgrade keeps starting.
    assert await migrate(url) == []
