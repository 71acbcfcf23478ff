"""A RAG namespace's text as training data: its chunks, in document order, read as a job's owner sees them (the
namespace must be the owner's own, looked up by the owner the job was created with)."""

from __future__ import annotations

from typing import Final

from .bound import BoundStore

__all__ = ["NamespaceText"]

MAX_CHUNKS: Final = 50_000
"""Read at most this many chunks: far more than a LoRA run uses, and a bound on the job's memory."""


class NamespaceText(BoundStore):
    what = "RAG storage"

    async def exists(self, owner: str | None, name: str) -> bool:
        """Does `owner` have a namespace called `name`?"""
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                "SELECT 1 FROM rag_namespaces WHERE owner IS NOT DISTINCT FROM %s AND name = %s", [owner, name]
            )
            return await cur.fetchone() is not None

    async def read(self, job_id: str, name: str) -> list[str] | None:
        """The chunk texts of the namespace `name` of job `job_id`'s owner; None when that owner has none by
        that name (whoever else does)."""
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                "SELECT n.id FROM jobs j JOIN rag_namespaces n ON n.owner IS NOT DISTINCT FROM j.owner "
                "AND n.name = %s WHERE j.id = %s",
                [name, job_id],
            )
            found = await cur.fetchone()
            if found is None:
                return None
            cur = await conn.execute(
                "SELECT content FROM rag_chunks WHERE namespace_id = %s ORDER BY document_id, ordinal LIMIT %s",
                [found[0], MAX_CHUNKS],
            )
            return [str(r[0]) for r in await cur.fetchall()]
