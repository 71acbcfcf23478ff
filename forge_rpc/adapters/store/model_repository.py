"""The model repository in PostgreSQL (`model_preferences`): stored preferences per model (description,
favourite, default, tags), whether a provider still lists it, and its usage statistics from the ledger.

Request paths do not read this directly: `model_preferences_cache.PreferenceCache` keeps the rows in memory.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, LiteralString

from psycopg import AsyncConnection
from psycopg.rows import class_row

from .bound import BoundStore

__all__ = [
    "Changes",
    "ModelRepositoryStore",
    "ModelStats",
    "RepositoryRow",
    "SyncResult",
]


# Serialises the writes that touch several rows (moving the default, a sync): two callers each clearing the old
# default and setting a different new one would otherwise both pass the clear and one would hit the one-default
# unique index; and a sync locking rows in its own order could deadlock with a default move.
_MANY_ROWS_LOCK: Final = int.from_bytes(
    hashlib.sha256(b"forge.model_preferences.default").digest()[:8], "big", signed=True
)


@dataclass(frozen=True, slots=True)
class RepositoryRow:
    name: str
    description: str
    is_favorite: bool
    is_default: bool
    tags: list[str]
    provider: str
    """Provider kind that listed it when last seen; '' while missing."""
    available: bool
    """False when the last sync found no provider listing it (or it was added before any provider had it)."""
    created_at: datetime
    updated_at: datetime
    last_seen_at: datetime | None
    missing_since: datetime | None


@dataclass(frozen=True, slots=True)
class Changes:
    """Preferences to write; None leaves a field as it is (or at its default for a new row)."""

    description: str | None = None
    is_favorite: bool | None = None
    is_default: bool | None = None
    tags: Sequence[str] | None = None


@dataclass(frozen=True, slots=True)
class ModelStats:
    total_requests: int
    avg_latency_ms: float


@dataclass(frozen=True, slots=True)
class SyncResult:
    added: list[str]
    missing: list[str]
    total: int


_COLUMNS: Final = (
    "name, description, is_favorite, is_default, tags, provider, available, created_at, updated_at, "
    "last_seen_at, missing_since"
)

# `seen` is the provider kind when the caller just found the model listed, else NULL (availability untouched).
_INSERT: Final = f"""
INSERT INTO model_preferences (name, description, is_favorite, is_default, tags, provider, available, last_seen_at)
VALUES (%(name)s, coalesce(%(description)s::text, ''), coalesce(%(is_favorite)s::boolean, false),
        coalesce(%(is_default)s::boolean, false), coalesce(%(tags)s::text[], '{{}}'), coalesce(%(seen)s::text, ''),
        %(seen)s::text IS NOT NULL, CASE WHEN %(seen)s::text IS NOT NULL THEN now() END)
ON CONFLICT (name) DO NOTHING
RETURNING {_COLUMNS}
"""

_UPDATE: Final = f"""
UPDATE model_preferences SET
    description   = coalesce(%(description)s::text, description),
    is_favorite   = coalesce(%(is_favorite)s::boolean, is_favorite),
    is_default    = coalesce(%(is_default)s::boolean, is_default),
    tags          = coalesce(%(tags)s::text[], tags),
    provider      = coalesce(%(seen)s::text, provider),
    available     = available OR %(seen)s::text IS NOT NULL,
    last_seen_at  = CASE WHEN %(seen)s::text IS NOT NULL THEN now() ELSE last_seen_at END,
    missing_since = CASE WHEN %(seen)s::text IS NOT NULL THEN NULL ELSE missing_since END
WHERE name = %(name)s
RETURNING {_COLUMNS}
"""

_CLEAR_DEFAULT: Final = "UPDATE model_preferences SET is_default = false WHERE is_default AND name <> %s"

_SYNC_ADD: Final = """
INSERT INTO model_preferences (name, provider, available, last_seen_at)
SELECT name, provider, true, now() FROM unnest(%s::text[], %s::text[]) AS seen (name, provider)
ON CONFLICT (name) DO NOTHING
RETURNING name
"""

_SYNC_SEEN: Final = """
UPDATE model_preferences AS m
SET provider = seen.provider, available = true, last_seen_at = now(), missing_since = NULL
FROM unnest(%s::text[], %s::text[]) AS seen (name, provider)
WHERE m.name = seen.name
"""

_SYNC_GONE: Final = """
UPDATE model_preferences SET available = false, provider = '', missing_since = coalesce(missing_since, now())
WHERE available AND NOT (name = ANY(%s::text[]))
"""


class _NothingWritten(Exception):
    pass


class ModelRepositoryStore(BoundStore):
    what = "the model repository's storage"

    async def all(self) -> list[RepositoryRow]:
        async with self._pool.connection() as conn, conn.cursor(row_factory=class_row(RepositoryRow)) as cur:
            await cur.execute(f"SELECT {_COLUMNS} FROM model_preferences ORDER BY name")
            return await cur.fetchall()

    async def page(self, offset: int, limit: int, favorites_only: bool) -> tuple[list[RepositoryRow], int]:
        """One page in name order, and how many rows match in all."""
        where: LiteralString = "WHERE is_favorite" if favorites_only else ""
        async with self._pool.connection() as conn, conn.cursor(row_factory=class_row(RepositoryRow)) as cur:
            await cur.execute(
                f"SELECT {_COLUMNS} FROM model_preferences {where} ORDER BY name LIMIT %s OFFSET %s", [limit, offset]
            )
            rows = await cur.fetchall()
            counted = await (await conn.execute(f"SELECT count(*) FROM model_preferences {where}")).fetchone()
        return rows, int(counted[0]) if counted else 0

    async def get(self, name: str) -> RepositoryRow | None:
        async with self._pool.connection() as conn, conn.cursor(row_factory=class_row(RepositoryRow)) as cur:
            await cur.execute(f"SELECT {_COLUMNS} FROM model_preferences WHERE name = %s", [name])
            return await cur.fetchone()

    async def stats(self, name: str) -> ModelStats:
        """From the usage ledger: every request recorded for the model, mean latency of the completed ones."""
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                "SELECT count(*), avg(latency_ms) FILTER (WHERE status = 'completed') FROM usage_ledger "
                "WHERE model = %s",
                [name],
            )
            row = await cur.fetchone()
        if row is None:
            return ModelStats(0, 0.0)
        return ModelStats(int(row[0]), float(row[1] or 0.0))

    async def create(self, name: str, changes: Changes, seen: str | None) -> RepositoryRow | None:
        """The new row, or None when the name is taken. `seen`: the provider kind listing it now, if any."""
        return await self._write(_INSERT, name, changes, seen)

    async def update(self, name: str, changes: Changes, seen: str | None, *, create: bool) -> RepositoryRow | None:
        """The updated row; with `create`, a missing row is added first. None when there is no such row."""
        if not create:
            return await self._write(_UPDATE, name, changes, seen)
        # Insert-then-update rather than one upsert: an upsert would take the new-row defaults for fields the
        # caller left unset and overwrite what is stored.
        async with self._pool.connection() as conn, conn.transaction():
            if changes.is_default:  # before the insert: a sync holding the lock may be waiting on this new row
                await conn.execute("SELECT pg_advisory_xact_lock(%s)", [_MANY_ROWS_LOCK])
            await conn.execute(_INSERT, _params(name, Changes(), seen))
            return await self._apply(conn, _UPDATE, name, changes, seen)

    async def _write(
        self, statement: LiteralString, name: str, changes: Changes, seen: str | None
    ) -> RepositoryRow | None:
        async with self._pool.connection() as conn:
            return await self._apply(conn, statement, name, changes, seen)

    async def _apply(
        self, conn: AsyncConnection[Any], statement: LiteralString, name: str, changes: Changes, seen: str | None
    ) -> RepositoryRow | None:
        """One transaction (a savepoint inside the caller's): moving the default clears the old one in it too."""
        try:
            async with conn.transaction():
                if changes.is_default:
                    await conn.execute("SELECT pg_advisory_xact_lock(%s)", [_MANY_ROWS_LOCK])
                    await conn.execute(_CLEAR_DEFAULT, [name])
                async with conn.cursor(row_factory=class_row(RepositoryRow)) as cur:
                    await cur.execute(statement, _params(name, changes, seen))
                    row = await cur.fetchone()
                if row is None:
                    raise _NothingWritten  # rolls back the clear: the old default stays
                return row
        except _NothingWritten:
            return None

    async def sync(self, listed: Mapping[str, str]) -> SyncResult:
        """Reconciles with what providers list (name → provider kind) in one transaction: new names are added,
        rows no longer listed are flagged unavailable, and listed ones are marked available again."""
        names, kinds = list(listed), list(listed.values())
        async with self._pool.connection() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock(%s)", [_MANY_ROWS_LOCK])
            added = [r[0] for r in await (await conn.execute(_SYNC_ADD, [names, kinds])).fetchall()]
            await conn.execute(_SYNC_SEEN, [names, kinds])
            await conn.execute(_SYNC_GONE, [names])
            missing_rows = await conn.execute("SELECT name FROM model_preferences WHERE NOT available ORDER BY name")
            missing = [r[0] for r in await missing_rows.fetchall()]
            counted = await (await conn.execute("SELECT count(*) FROM model_preferences")).fetchone()
        return SyncResult(sorted(added), missing, int(counted[0]) if counted else 0)


def _params(name: str, changes: Changes, seen: str | None) -> dict[str, Any]:
    return {
        "name": name,
        "description": changes.description,
        "is_favorite": changes.is_favorite,
        "is_default": changes.is_default,
        "tags": None if changes.tags is None else list(changes.tags),
        "seen": seen,
    }
