"""Migration 0003 on a database that already holds repository rows (written under 0001/0002), and re-run."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import psycopg
import pytest
import pytest_asyncio
from psycopg import sql
from psycopg.conninfo import make_conninfo

from forge_rpc.adapters.store import load_migrations, migrate
from tests.models_repo.conftest import sql_rows

pytestmark = pytest.mark.asyncio


@pytest_asyncio.fixture
async def empty_database(apps_database: str) -> AsyncIterator[str]:
    """A database of this test's own on the session's server (with pgvector, from template1)."""
    name = f"repo_migration_{uuid.uuid4().hex[:8]}"
    admin = make_conninfo(apps_database, dbname="postgres")
    async with await psycopg.AsyncConnection.connect(admin, autocommit=True) as conn:
        await conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    yield make_conninfo(apps_database, dbname=name)
    async with await psycopg.AsyncConnection.connect(admin, autocommit=True) as conn:
        await conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))


async def test_0003_applies_over_existing_rows_and_reruns_as_a_no_op(empty_database: str) -> None:
    url = empty_database
    before = [m for m in load_migrations() if m.version < 3]
    assert await migrate(url, before) == [1, 2]
    await sql_rows(
        url,
        "INSERT INTO model_preferences (name, description, is_default, tags, available) VALUES "
        "('kept:1b', 'old row', true, '{a,b}', true), ('gone:1b', '', false, '{}', false)",
    )

    applied = await migrate(url)
    assert 3 in applied
    rows = await sql_rows(
        url,
        "SELECT name, description, is_default, tags, available, provider, missing_since "
        "FROM model_preferences ORDER BY name",
    )
    assert rows == [
        ("gone:1b", "", False, [], False, "", None),
        ("kept:1b", "old row", True, ["a", "b"], True, "", None),
    ]

    assert await migrate(url) == []  # the second run finds nothing to do and changes nothing
    assert await sql_rows(url, "SELECT count(*) FROM model_preferences") == [(2,)]


async def test_the_schema_refuses_what_the_servicer_refuses(empty_database: str) -> None:
    url = empty_database
    await migrate(url)
    await sql_rows(url, "INSERT INTO model_preferences (name, is_default) VALUES ('one:1b', true)")
    with pytest.raises(psycopg.errors.UniqueViolation):
        await sql_rows(url, "INSERT INTO model_preferences (name, is_default) VALUES ('two:1b', true)")
    for bad in (
        "INSERT INTO model_preferences (name) VALUES ('')",
        "INSERT INTO model_preferences (name) VALUES ('has space')",
        "INSERT INTO model_preferences (name, tags) VALUES ('many:1b', array_fill('t'::text, ARRAY[33]))",
        "INSERT INTO model_preferences (name, available, provider) VALUES ('odd:1b', false, 'ollama')",
    ):
        with pytest.raises(psycopg.errors.CheckViolation):
            await sql_rows(url, bad)
