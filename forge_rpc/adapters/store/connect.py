"""The connection pool every store module shares: psycopg 3, async, with pgvector's types on each connection."""

from __future__ import annotations

from typing import Any

from pgvector.psycopg import register_vector_async
from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

__all__ = ["create_pool"]


async def _configure(conn: AsyncConnection[Any]) -> None:
    # Runs once per new connection (a few catalog lookups), not per query: numpy arrays then bind as `vector`
    # and `vector` columns read as pgvector.Vector. The extension must exist, so migrate() comes first.
    await register_vector_async(conn)
    await conn.commit()  # the lookups opened a transaction; the pool wants the connection back idle


def create_pool(
    url: str,
    *,
    min_size: int = 1,
    max_size: int = 10,
    timeout_s: float = 10.0,
    max_idle_s: float = 600.0,
    name: str = "forge",
) -> AsyncConnectionPool[AsyncConnection[Any]]:
    """A pool that is not open yet: the caller opens it (`await pool.open(wait=True)`, failing fast when the
    database is unreachable) and closes it (`await pool.close()`) with the rest of the app.

    `timeout_s` bounds the wait for a free connection; `max_idle_s` returns idle connections above
    `min_size` to the server.
    """
    return AsyncConnectionPool(
        url,
        min_size=min_size,
        max_size=max_size,
        timeout=timeout_s,
        max_idle=max_idle_s,
        name=name,
        open=False,
        configure=_configure,
        kwargs={"application_name": name},
    )
