"""API keys in PostgreSQL (0004_auth.sql): created, listed, revoked (kept for the audit trail), looked up by the
SHA-256 of their secret, and their last use written in batches."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from .auth_store import Bound, new_id

__all__ = ["ALL_USERS", "ApiKeyRow", "ApiKeyStore", "KeyWrite"]

#: `list_keys(user_id=ALL_USERS)` lists everyone's keys.
ALL_USERS = "*"

_KEY_COLUMNS = (
    "id, user_id, name, prefix, scopes, allowed_models, limits, created_at, expires_at, last_used_at, revoked_at"
)


@dataclass(frozen=True, slots=True)
class ApiKeyRow:
    id: str
    user_id: str
    name: str
    prefix: str
    scopes: tuple[str, ...]
    allowed_models: tuple[str, ...]
    limits: dict[str, Any]
    created_at: datetime
    expires_at: datetime | None
    last_used_at: datetime | None
    revoked_at: datetime | None


@dataclass(frozen=True, slots=True)
class KeyWrite:
    user_id: str
    name: str
    prefix: str
    digest: str
    scopes: Sequence[str]
    allowed_models: Sequence[str]
    limits: dict[str, Any]
    expires_at: datetime | None


def _key(row: dict[str, Any]) -> ApiKeyRow:
    return ApiKeyRow(**{**row, "scopes": tuple(row["scopes"]), "allowed_models": tuple(row["allowed_models"])})


class ApiKeyStore(Bound):
    async def create_key(self, key: KeyWrite) -> ApiKeyRow:
        async with self._pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(
                f"""INSERT INTO auth_api_keys
                        (id, user_id, name, prefix, secret_sha256, scopes, allowed_models, limits, expires_at)
                    VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s) RETURNING {_KEY_COLUMNS}""",
                [
                    new_id("key"),
                    key.user_id,
                    key.name,
                    key.prefix,
                    key.digest,
                    list(key.scopes),
                    list(key.allowed_models),
                    Jsonb(key.limits),
                    key.expires_at,
                ],
            )
            row = await cur.fetchone()
        assert row is not None
        return _key(row)

    async def get_key(self, key_id: str) -> ApiKeyRow | None:
        async with self._pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(f"SELECT {_KEY_COLUMNS} FROM auth_api_keys WHERE id = %s", [key_id])
            row = await cur.fetchone()
        return None if row is None else _key(row)

    async def key_by_digest(self, digest: str) -> ApiKeyRow | None:
        async with self._pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(f"SELECT {_KEY_COLUMNS} FROM auth_api_keys WHERE secret_sha256 = %s", [digest])
            row = await cur.fetchone()
        return None if row is None else _key(row)

    async def list_keys(
        self, user_id: str, include_revoked: bool, limit: int, offset: int
    ) -> tuple[list[ApiKeyRow], int]:
        """Newest first; `user_id` ALL_USERS lists everyone's."""
        where = "(%(user)s = '*' OR user_id = %(user)s) AND (%(revoked)s OR revoked_at IS NULL)"
        params = {"user": user_id, "revoked": include_revoked, "limit": limit, "offset": offset}
        async with self._pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(
                f"""SELECT {_KEY_COLUMNS} FROM auth_api_keys WHERE {where}
                    ORDER BY created_at DESC, id LIMIT %(limit)s OFFSET %(offset)s""",
                params,
            )
            rows = await cur.fetchall()
            await cur.execute(f"SELECT count(*) AS n FROM auth_api_keys WHERE {where}", params)
            counted = await cur.fetchone()
        return [_key(r) for r in rows], int(counted["n"]) if counted else 0

    async def revoke_key(self, key_id: str) -> ApiKeyRow | None:
        """Marks the key revoked (idempotent: a revoked key keeps its first revocation time)."""
        async with self._pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(
                f"""UPDATE auth_api_keys SET revoked_at = coalesce(revoked_at, now())
                    WHERE id = %s RETURNING {_KEY_COLUMNS}""",
                [key_id],
            )
            row = await cur.fetchone()
        return None if row is None else _key(row)

    async def touch_keys(self, used: dict[str, datetime]) -> None:
        """Writes last_used_at for many keys in one statement (never moving it backwards)."""
        if not used:
            return
        ids, times = list(used), list(used.values())
        async with self._pool.connection() as conn:
            await conn.execute(
                """UPDATE auth_api_keys k SET last_used_at = greatest(k.last_used_at, u.at)
                   FROM unnest(%s::text[], %s::timestamptz[]) AS u(id, at) WHERE k.id = u.id""",
                [ids, times],
            )
