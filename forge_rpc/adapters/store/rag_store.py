"""RAG storage: namespaces → documents → chunks in PostgreSQL, searched with pgvector's HNSW and full-text rank.

Each namespace has its own partial HNSW expression index (0001_initial.sql creates it by trigger). A vector
search uses it only when it repeats the index expression, `embedding::vector(<dimension>)`, and the predicate
`namespace_id = <id>` with the id as a *literal*: so those two are composed into the SQL (both are integers
read from our own table, never caller text), and everything else is a bind parameter.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, LiteralString

import numpy as np
import numpy.typing as npt
from psycopg import AsyncConnection, sql
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from ...domain import ErrorCode, FailedPrecondition, ForgeError

__all__ = [
    "ALL_OWNERS",
    "ChunkWrite",
    "Condition",
    "DocumentRow",
    "DocumentWrite",
    "Match",
    "NamespaceRow",
    "RagStore",
    "fuse_rankings",
    "vector_search_sql",
]

Pool = AsyncConnectionPool[AsyncConnection[Any]]
Vector = npt.NDArray[np.float32]

#: `list_namespaces(owner=ALL_OWNERS)` lists everyone's.
ALL_OWNERS = "*"

# Reciprocal rank fusion's damping constant (Cormack et al. 2009): 60 keeps one list's top hit from drowning
# a chunk that both lists rank well.
RRF_K = 60


@dataclass(frozen=True, slots=True)
class NamespaceRow:
    id: int
    name: str
    owner: str | None
    description: str
    embedder: str
    dimension: int
    chunk_size: int
    chunk_overlap: int
    document_count: int
    chunk_count: int
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class DocumentRow:
    id: str
    namespace: str
    content: str
    metadata: dict[str, Any]
    chunk_count: int
    token_count: int
    content_sha256: str
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class ChunkWrite:
    text: str
    token_count: int


@dataclass(slots=True)
class DocumentWrite:
    id: str
    content: str
    metadata: dict[str, Any]
    content_sha256: str
    token_count: int
    chunks: list[ChunkWrite]
    embeddings: Vector | None = None
    """One row per chunk; None keeps the stored chunks (identical content re-indexed: metadata only)."""


@dataclass(frozen=True, slots=True)
class Condition:
    """One metadata condition: `op` is eq, ne, in, not_in, contains, gt, gte, lt, lte or exists."""

    path: tuple[str, ...]
    op: str
    value: Any = None


@dataclass(slots=True)
class Match:
    document_id: str
    chunk_index: int
    content: str
    metadata: dict[str, Any]
    score: float = 0.0
    vector_score: float | None = None
    text_score: float | None = None
    ranks: dict[str, int] = field(default_factory=dict)


def _nested(path: Sequence[str], value: Any) -> Any:
    for key in reversed(path):
        value = {key: value}
    return value


def _condition_sql(c: Condition, params: list[Any]) -> sql.Composable:
    """SQL over `d.metadata` for one condition, appending its parameters. Equality and containment use `@>` so
    the GIN index on metadata serves them."""
    at = sql.SQL("(d.metadata #> %s::text[])")
    path = list(c.path)
    if c.op == "exists":
        params.append(path)
        return sql.SQL("{} IS NOT NULL").format(at)
    if c.op == "eq" and not isinstance(c.value, list):
        params.append(Jsonb(_nested(path, c.value)))
        return sql.SQL("d.metadata @> %s")
    if c.op == "contains":
        params.append(Jsonb(_nested(path, [c.value])))
        return sql.SQL("d.metadata @> %s")
    if c.op in ("eq", "ne"):
        params.extend([path, Jsonb(c.value)])
        return sql.SQL("{} IS NOT DISTINCT FROM %s" if c.op == "eq" else "{} IS DISTINCT FROM %s").format(at)
    if c.op in ("in", "not_in"):
        params.extend([Jsonb(c.value if isinstance(c.value, list) else [c.value]), path, path])
        found = sql.SQL("(%s @> jsonb_build_array({}) AND {} IS NOT NULL)").format(at, at)
        return found if c.op == "in" else sql.SQL("NOT coalesce({}, false)").format(found)
    compare = {"gt": ">", "gte": ">=", "lt": "<", "lte": "<="}.get(c.op)
    if compare is None:
        raise ValueError(f"unknown metadata operator {c.op!r}")
    # jsonb orders numbers numerically and strings as text, but ranks types against each other: compare only
    # values of the caller's type.
    params.extend([path, Jsonb(c.value), path, Jsonb(c.value)])
    return sql.SQL("({} " + compare + " %s AND jsonb_typeof({}) = jsonb_typeof(%s))").format(at, at)


def _where(namespace_id: int, conditions: Sequence[Condition], params: list[Any]) -> sql.Composable:
    parts: list[sql.Composable] = [sql.SQL("c.namespace_id = {}").format(sql.Literal(namespace_id))]
    parts.extend(_condition_sql(c, params) for c in conditions)
    return sql.SQL(" AND ").join(parts)


def vector_search_sql(
    namespace: NamespaceRow, query: Vector, limit: int, conditions: Sequence[Condition] = ()
) -> tuple[sql.Composed, list[Any]]:
    """The nearest-chunks query and its parameters.

    Distances come out of a MATERIALIZED CTE re-sorted outside it: with `hnsw.iterative_scan = relaxed_order`
    (set when filters apply) the index may return rows slightly out of order.
    """
    params: list[Any] = [query]
    where = _where(namespace.id, conditions, params)
    params.extend([query, limit])
    expression = sql.SQL("c.embedding::vector({})").format(sql.Literal(namespace.dimension))
    statement = sql.SQL(
        "WITH hits AS MATERIALIZED ("
        " SELECT c.document_id, c.ordinal, c.content, d.metadata, {expr} <=> %s AS distance"
        " FROM rag_chunks c JOIN rag_documents d ON d.namespace_id = c.namespace_id AND d.id = c.document_id"
        " WHERE {where} ORDER BY {expr} <=> %s LIMIT %s)"
        " SELECT * FROM hits ORDER BY distance"
    ).format(expr=expression, where=where)
    return statement, params


def fuse_rankings(rankings: dict[str, list[Match]], limit: int, k: int = RRF_K) -> list[Match]:
    """Reciprocal rank fusion: score = Σ 1/(k + rank) over the rankings a chunk appears in (rank from 1)."""
    fused: dict[tuple[str, int], Match] = {}
    for name, ranking in rankings.items():
        for rank, hit in enumerate(ranking, start=1):
            key = (hit.document_id, hit.chunk_index)
            into = fused.setdefault(key, Match(hit.document_id, hit.chunk_index, hit.content, hit.metadata))
            into.ranks[name] = rank
            into.score += 1.0 / (k + rank)
            into.vector_score = hit.vector_score if hit.vector_score is not None else into.vector_score
            into.text_score = hit.text_score if hit.text_score is not None else into.text_score
    return sorted(fused.values(), key=lambda m: (-m.score, m.document_id, m.chunk_index))[:limit]


_NAMESPACE_COLUMNS: LiteralString = """
    n.id, n.name, n.owner, n.description, n.embedder, n.dimension, n.chunk_size, n.chunk_overlap,
    n.created_at, n.updated_at,
    (SELECT count(*) FROM rag_documents d WHERE d.namespace_id = n.id) AS document_count,
    (SELECT coalesce(sum(d.chunk_count), 0) FROM rag_documents d WHERE d.namespace_id = n.id) AS chunk_count
"""


def _namespace(row: dict[str, Any]) -> NamespaceRow:
    return NamespaceRow(
        row["id"],
        row["name"],
        row["owner"],
        row["description"],
        row["embedder"],
        row["dimension"],
        row["chunk_size"],
        row["chunk_overlap"],
        int(row["document_count"]),
        int(row["chunk_count"]),
        row["created_at"],
        row["updated_at"],
    )


def _document(row: dict[str, Any], namespace: str) -> DocumentRow:
    return DocumentRow(
        row["id"],
        namespace,
        row.get("content") or "",
        row["metadata"],
        row["chunk_count"],
        int(row["token_count"]),
        row["content_sha256"] or "",
        row["created_at"],
        row["updated_at"],
    )


class RagStore:
    def __init__(self, pool: Pool | None = None, *, ef_search: int = 100) -> None:
        """`ef_search`: HNSW's search beam (pgvector's default is 40); wider finds more of the true nearest
        neighbours for some latency: see tests/rag/bench_rag.py for the trade-off measured."""
        self._bound = pool
        self._ef_search = ef_search

    def bind(self, pool: Pool) -> None:
        """Sets the pool when it did not exist at construction (storage starts after the servicers are built)."""
        self._bound = pool

    @property
    def _pool(self) -> Pool:
        if self._bound is None:
            raise FailedPrecondition("RAG storage is not started yet", "STORAGE_NOT_READY")
        return self._bound

    # --- namespaces -------------------------------------------------------------------------------------------

    async def create_namespace(
        self,
        owner: str | None,
        name: str,
        *,
        embedder: str,
        dimension: int,
        description: str = "",
        chunk_size: int = 256,
        chunk_overlap: int = 32,
        exist_ok: bool = False,
    ) -> NamespaceRow:
        """Creates the namespace (and, by trigger, its HNSW index). With `exist_ok` an existing one is returned
        as it is, whatever it was created with; otherwise it is ALREADY_EXISTS."""
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                "INSERT INTO rag_namespaces (owner, name, description, embedder, dimension, chunk_size,"
                " chunk_overlap) VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT (owner, name) DO NOTHING",
                (owner, name, description, embedder, dimension, chunk_size, chunk_overlap),
            )
            created = cur.rowcount == 1
        if not created and not exist_ok:
            raise ForgeError(
                f"RAG namespace {name!r} already exists",
                ErrorCode.ALREADY_EXISTS,
                "ALREADY_EXISTS",
                metadata={"name": name},
            )
        found = await self.get_namespace(owner, name)
        if found is None:  # deleted between the two statements
            raise ForgeError(f"RAG namespace {name!r} was deleted concurrently", ErrorCode.ABORTED, "ABORTED")
        return found

    async def get_namespace(self, owner: str | None, name: str) -> NamespaceRow | None:
        async with self._pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(
                "SELECT " + _NAMESPACE_COLUMNS + " FROM rag_namespaces n"
                " WHERE n.owner IS NOT DISTINCT FROM %s AND n.name = %s",
                (owner, name),
            )
            row = await cur.fetchone()
        return _namespace(row) if row else None

    async def list_namespaces(self, owner: str | None, limit: int, offset: int) -> tuple[list[NamespaceRow], int]:
        """A page ordered by (owner, name), and the total."""
        everyone = owner == ALL_OWNERS
        async with self._pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(
                "SELECT " + _NAMESPACE_COLUMNS + ", count(*) OVER () AS total FROM rag_namespaces n"
                " WHERE %s OR n.owner IS NOT DISTINCT FROM %s ORDER BY n.owner NULLS FIRST, n.name"
                " LIMIT %s OFFSET %s",
                (everyone, owner, limit, offset),
            )
            rows = await cur.fetchall()
        total = int(rows[0]["total"]) if rows else 0
        return [_namespace(r) for r in rows], total

    async def delete_namespace(self, owner: str | None, name: str) -> NamespaceRow | None:
        """Deletes it with its documents and chunks (cascade; the trigger drops its index): the row as it was."""
        async with self._pool.connection() as conn, conn.transaction():
            found = await self.get_namespace(owner, name)
            if found is None:
                return None
            await conn.execute("DELETE FROM rag_namespaces WHERE id = %s", (found.id,))
        return found

    # --- documents --------------------------------------------------------------------------------------------

    async def content_hashes(self, namespace_id: int, ids: Sequence[str]) -> dict[str, str]:
        """The stored content hash of each of `ids` that exists (to skip re-embedding unchanged content)."""
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                "SELECT id, content_sha256 FROM rag_documents WHERE namespace_id = %s AND id = ANY(%s)",
                (namespace_id, list(ids)),
            )
            return {r[0]: r[1] or "" for r in await cur.fetchall()}

    async def write_documents(self, namespace_id: int, documents: Sequence[DocumentWrite]) -> int:
        """Upserts the documents and replaces their chunks, in one transaction: chunks written."""
        written = 0
        async with self._pool.connection() as conn, conn.transaction():
            for doc in documents:
                await conn.execute(
                    "INSERT INTO rag_documents AS d (namespace_id, id, metadata, content_sha256, content,"
                    " token_count, chunk_count) VALUES (%s, %s, %s, %s, %s, %s, %s)"
                    " ON CONFLICT (namespace_id, id) DO UPDATE SET metadata = excluded.metadata,"
                    " content_sha256 = excluded.content_sha256, content = excluded.content,"
                    " token_count = excluded.token_count, chunk_count = excluded.chunk_count",
                    (
                        namespace_id,
                        doc.id,
                        Jsonb(doc.metadata),
                        doc.content_sha256,
                        doc.content,
                        doc.token_count,
                        len(doc.chunks),
                    ),
                )
                if doc.embeddings is None:
                    continue
                await conn.execute(
                    "DELETE FROM rag_chunks WHERE namespace_id = %s AND document_id = %s", (namespace_id, doc.id)
                )
                cur = conn.cursor()
                async with cur.copy(
                    "COPY rag_chunks (namespace_id, document_id, ordinal, content, token_count, embedding)"
                    " FROM STDIN WITH (FORMAT BINARY)"
                ) as copy:
                    copy.set_types(["int8", "text", "int4", "text", "int4", "vector"])
                    for ordinal, (chunk, vector) in enumerate(zip(doc.chunks, doc.embeddings, strict=True)):
                        await copy.write_row((namespace_id, doc.id, ordinal, chunk.text, chunk.token_count, vector))
                written += len(doc.chunks)
            await conn.execute("UPDATE rag_namespaces SET updated_at = now() WHERE id = %s", (namespace_id,))
        return written

    async def get_document(self, namespace: NamespaceRow, document_id: str) -> DocumentRow | None:
        async with self._pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(
                "SELECT * FROM rag_documents WHERE namespace_id = %s AND id = %s", (namespace.id, document_id)
            )
            row = await cur.fetchone()
        return _document(row, namespace.name) if row else None

    async def list_documents(
        self, namespace: NamespaceRow, after: str, limit: int, include_content: bool
    ) -> tuple[list[DocumentRow], str]:
        """Documents with ids after `after`, ordered by id; and a token for the next page ("" on the last)."""
        content = sql.SQL("content") if include_content else sql.SQL("'' AS content")
        query = sql.SQL(
            "SELECT id, metadata, content_sha256, chunk_count, token_count, created_at, updated_at, {} "
            "FROM rag_documents WHERE namespace_id = %s AND id > %s ORDER BY id LIMIT %s"
        ).format(content)
        async with self._pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(query, (namespace.id, after, limit + 1))
            rows = await cur.fetchall()
        more = len(rows) > limit
        docs = [_document(r, namespace.name) for r in rows[:limit]]
        token = base64.urlsafe_b64encode(b"d:" + docs[-1].id.encode()).decode() if more and docs else ""
        return docs, token

    async def delete_document(self, namespace_id: int, document_id: str) -> int | None:
        """Removes the document and (cascade) its chunks: the chunks removed, None when it did not exist."""
        async with self._pool.connection() as conn, conn.transaction():
            cur = await conn.execute(
                "DELETE FROM rag_documents WHERE namespace_id = %s AND id = %s RETURNING chunk_count",
                (namespace_id, document_id),
            )
            row = await cur.fetchone()
            if row is None:
                return None
            await conn.execute("UPDATE rag_namespaces SET updated_at = now() WHERE id = %s", (namespace_id,))
        return int(row[0])

    # --- search -----------------------------------------------------------------------------------------------

    async def search_vector(
        self, namespace: NamespaceRow, query: Vector, limit: int, conditions: Sequence[Condition] = ()
    ) -> list[Match]:
        """The `limit` chunks nearest to `query` by cosine distance, over the namespace's HNSW index."""
        statement, params = vector_search_sql(namespace, query, limit, conditions)
        async with self._pool.connection() as conn, conn.transaction(), conn.cursor(row_factory=dict_row) as cur:
            # ef_search also caps what one scan returns, so a larger k needs a wider beam.
            beam = max(self._ef_search, limit * 2)
            await cur.execute("SELECT set_config('hnsw.ef_search', %s, true)", (str(beam),))
            if conditions:
                await cur.execute("SET LOCAL hnsw.iterative_scan = relaxed_order")
            await cur.execute(statement, params)
            rows = await cur.fetchall()
        return [
            Match(r["document_id"], r["ordinal"], r["content"], r["metadata"], 1.0 - r["distance"], 1.0 - r["distance"])
            for r in rows
        ]

    async def search_text(
        self, namespace: NamespaceRow, text: str, limit: int, conditions: Sequence[Condition] = ()
    ) -> list[Match]:
        """Chunks matching any of the query's words, by full-text rank (ts_rank_cd normalised to 0..1).

        Any word, not all (websearch_to_tsquery would AND them): a paraphrased question rarely shares every
        word with the passage that answers it.
        """
        params: list[Any] = [text]
        where = _where(namespace.id, conditions, params)
        statement = sql.SQL(
            "WITH q AS (SELECT (SELECT string_agg(quote_literal(lexeme), ' | ')"
            " FROM unnest(to_tsvector('english', %s)))::tsquery AS query)"
            " SELECT c.document_id, c.ordinal, c.content, d.metadata, ts_rank_cd(c.content_tsv, q.query, 32) AS rank"
            " FROM q, rag_chunks c JOIN rag_documents d ON d.namespace_id = c.namespace_id AND d.id = c.document_id"
            " WHERE {} AND c.content_tsv @@ q.query ORDER BY rank DESC, c.id LIMIT %s"
        ).format(where)
        async with self._pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(statement, [*params, limit])
            rows = await cur.fetchall()
        return [
            Match(r["document_id"], r["ordinal"], r["content"], r["metadata"], float(r["rank"]), None, float(r["rank"]))
            for r in rows
        ]
