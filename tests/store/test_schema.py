"""The schema of 0001 through the pool: pgvector with per-namespace HNSW indexes, full text, the ledger's
one-row-per-request rule, one default model, append-only job events."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import numpy as np
import psycopg
import pytest
import pytest_asyncio
from psycopg import AsyncConnection, sql
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from forge_rpc.adapters.store import create_pool, migrate

Pool = AsyncConnectionPool[AsyncConnection[Any]]


@pytest_asyncio.fixture(scope="module")
async def pool(database: str) -> AsyncIterator[Pool]:
    await migrate(database)
    pool = create_pool(database, min_size=1, max_size=4)
    await pool.open(wait=True)
    yield pool
    await pool.close()


async def _create_namespace(conn: AsyncConnection[Any], name: str, dimension: int) -> int:
    cur = await conn.execute(
        "INSERT INTO rag_namespaces (name, embedder, dimension) VALUES (%s, 'test/embedder', %s) RETURNING id",
        [name, dimension],
    )
    row = await cur.fetchone()
    assert row is not None
    namespace_id: int = row[0]
    return namespace_id


async def _add_chunks(conn: AsyncConnection[Any], namespace_id: int, doc: str, vectors: list[list[float]]) -> None:
    await conn.execute("INSERT INTO rag_documents (namespace_id, id) VALUES (%s, %s)", [namespace_id, doc])
    async with conn.cursor() as cur:
        await cur.executemany(
            "INSERT INTO rag_chunks (namespace_id, document_id, ordinal, content, embedding)"
            " VALUES (%s, %s, %s, %s, %s)",
            [(namespace_id, doc, i, f"{doc} chunk {i}", np.array(v, dtype=np.float32)) for i, v in enumerate(vectors)],
        )


async def test_pool_connections_read_and_write_vectors(pool: Pool) -> None:
    async with pool.connection() as conn:
        cur = await conn.execute("SELECT %s::vector", [np.array([1.0, 2.0, 3.0], dtype=np.float32)])
        row = await cur.fetchone()
    assert row is not None
    assert row[0].to_list() == [1.0, 2.0, 3.0]  # a pgvector.Vector; .to_numpy() for arrays


async def test_opening_a_pool_on_an_unreachable_server_fails_fast() -> None:
    pool = create_pool("postgresql://postgres@127.0.0.1:9/forge", min_size=1, max_size=1)
    with pytest.raises(PoolTimeout):
        await pool.open(wait=True, timeout=0.5)
    await pool.close()


async def test_cosine_search_uses_the_namespace_hnsw_index(pool: Pool) -> None:
    async with pool.connection() as conn:
        ns = await _create_namespace(conn, "search", 3)
        other = await _create_namespace(conn, "other", 2)
        await _add_chunks(conn, ns, "north", [[0.0, 1.0, 0.0], [0.1, 1.0, 0.0]])
        await _add_chunks(conn, ns, "east", [[1.0, 0.0, 0.0]])
        await _add_chunks(conn, other, "flat", [[1.0, 1.0]])
        cur = await conn.execute("SELECT indexname FROM pg_indexes WHERE tablename = 'rag_chunks'")
        indexes = await cur.fetchall()
        assert {f"rag_chunks_hnsw_{ns}", f"rag_chunks_hnsw_{other}"} <= {name for (name,) in indexes}

        query = sql.SQL(
            "SELECT document_id, ordinal, embedding::vector(3) <=> %(q)s AS distance FROM rag_chunks "
            "WHERE namespace_id = {ns} ORDER BY embedding::vector(3) <=> %(q)s LIMIT 2"
        ).format(ns=sql.Literal(ns))
        probe = {"q": np.array([0.0, 2.0, 0.0], dtype=np.float32)}  # cosine: length does not matter
        async with conn.transaction():
            # A few rows are cheaper to scan and sort; make the planner show the index it would use at scale.
            await conn.execute("SET LOCAL enable_seqscan = off; SET LOCAL enable_bitmapscan = off")
            explained = await (await conn.execute(b"EXPLAIN " + query.as_bytes(conn), probe)).fetchall()
            plan = "\n".join(line for (line,) in explained)
            rows = await (await conn.execute(query, probe)).fetchall()
    assert f"Index Scan using rag_chunks_hnsw_{ns}" in plan
    assert [(doc, ordinal) for doc, ordinal, _ in rows] == [("north", 0), ("north", 1)]
    assert rows[0][2] == pytest.approx(0.0, abs=1e-6)


async def test_a_chunk_of_the_wrong_dimension_is_rejected(pool: Pool) -> None:
    async with pool.connection() as conn:
        ns = await _create_namespace(conn, "strict", 3)
        await conn.commit()
        with pytest.raises(psycopg.errors.DataException, match="expected 3 dimensions, not 4"):
            await _add_chunks(conn, ns, "too-long", [[1.0, 2.0, 3.0, 4.0]])


async def test_dropping_a_namespace_drops_its_index_documents_and_chunks(pool: Pool) -> None:
    async with pool.connection() as conn:
        ns = await _create_namespace(conn, "doomed", 2)
        await _add_chunks(conn, ns, "doc", [[1.0, 0.0]])
        with pytest.raises(psycopg.errors.CheckViolation, match="cannot change"):
            async with conn.transaction():
                await conn.execute("UPDATE rag_namespaces SET dimension = 3 WHERE id = %s", [ns])
        await conn.execute("DELETE FROM rag_namespaces WHERE id = %s", [ns])
        left = await conn.execute(
            "SELECT (SELECT count(*) FROM rag_chunks WHERE namespace_id = %(ns)s),"
            " (SELECT count(*) FROM rag_documents WHERE namespace_id = %(ns)s),"
            " to_regclass(%(index)s)",
            {"ns": ns, "index": f"rag_chunks_hnsw_{ns}"},
        )
        assert await left.fetchone() == (0, 0, None)


async def test_full_text_column_stems_english(pool: Pool) -> None:
    async with pool.connection() as conn:
        ns = await _create_namespace(conn, "words", 2)
        await conn.execute("INSERT INTO rag_documents (namespace_id, id) VALUES (%s, 'd')", [ns])
        await conn.execute(
            "INSERT INTO rag_chunks (namespace_id, document_id, ordinal, content, embedding)"
            " VALUES (%s, 'd', 0, 'The quick dogs were running home', '[1,0]')",
            [ns],
        )
        cur = await conn.execute(
            "SELECT count(*) FROM rag_chunks WHERE namespace_id = %s"
            " AND content_tsv @@ websearch_to_tsquery('english', 'dog runs')",
            [ns],
        )
        assert await cur.fetchone() == (1,)


async def test_the_ledger_holds_one_row_per_request(pool: Pool) -> None:
    insert = (
        "INSERT INTO usage_ledger (request_id, model, provider, prompt_tokens, completion_tokens, cost_usd, status)"
        " VALUES (%s, 'm', 'p', %s, %s, 0.0000015, %s) ON CONFLICT (request_id) DO NOTHING"
    )
    async with pool.connection() as conn:
        await conn.execute(insert, ["req-1", 10, 5, "completed"])
        await conn.execute(insert, ["req-1", 10, 5, "completed"])  # a retried batch
        cur = await conn.execute("SELECT count(*), sum(total_tokens) FROM usage_ledger WHERE request_id = 'req-1'")
        assert await cur.fetchone() == (1, 15)
        await conn.commit()
        with pytest.raises(psycopg.errors.CheckViolation):
            await conn.execute(insert, ["req-2", 1, 1, "exploded"])


async def test_at_most_one_default_model(pool: Pool) -> None:
    async with pool.connection() as conn:
        await conn.execute("INSERT INTO model_preferences (name, is_default) VALUES ('a', true), ('b', false)")
        await conn.commit()
        with pytest.raises(psycopg.errors.UniqueViolation):
            await conn.execute("UPDATE model_preferences SET is_default = true WHERE name = 'b'")
        await conn.rollback()
        async with conn.transaction():  # moving the default: clear, then set
            await conn.execute("UPDATE model_preferences SET is_default = false WHERE is_default")
            await conn.execute("UPDATE model_preferences SET is_default = true WHERE name = 'b'")
        cur = await conn.execute("SELECT name FROM model_preferences WHERE is_default")
        assert await cur.fetchall() == [("b",)]


async def test_job_events_are_append_only_and_go_with_their_job(pool: Pool) -> None:
    async with pool.connection() as conn:
        job = f"job_schema_{uuid.uuid4().hex[:8]}"
        await conn.execute("INSERT INTO jobs (id, queue, kind) VALUES (%s, 'training', 'fine_tune')", [job])
        await conn.execute(
            "INSERT INTO job_events (job_id, seq, type, state, data) VALUES (%s, 1, 'progress', 'queued', %s)",
            [job, Jsonb({"pct": 10})],
        )
        await conn.commit()
        with pytest.raises(psycopg.errors.FeatureNotSupported, match="append-only"):
            await conn.execute("UPDATE job_events SET data = '{}' WHERE job_id = %s", [job])
        await conn.rollback()
        with pytest.raises(psycopg.errors.CheckViolation):
            await conn.execute("UPDATE jobs SET state = 'training' WHERE id = %s", [job])  # no lease
        await conn.rollback()
        await conn.execute("DELETE FROM jobs WHERE id = %s", [job])
        cur = await conn.execute("SELECT count(*) FROM job_events WHERE job_id = %s", [job])
        assert await cur.fetchone() == (0,)
