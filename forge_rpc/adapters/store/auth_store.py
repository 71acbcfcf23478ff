"""Users and login sessions (refresh-token families) in PostgreSQL (0004_auth.sql); API keys are in
api_key_store.py.

The store holds digests, never secrets: callers pass the SHA-256 of refresh tokens and argon2id hashes of
passwords.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from typing import Any

from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from ...domain import FailedPrecondition
from ...domain.auth_errors import AlreadyExists
from .bound import BoundStore

__all__ = ["AuthStore", "Bound", "Rotation", "RotationOutcome", "UserRow", "new_id"]


# Registrations take this transaction-level lock: "no other account uses this name as username or email" and
# "this is the first account" are checks over the whole table that unique indexes cannot express.
_REGISTER_LOCK = int.from_bytes(hashlib.sha256(b"forge.auth.register").digest()[:8], "big", signed=True)

_USER_COLUMNS = "id, username, email, full_name, role, disabled, limits, created_at, last_login_at"


@dataclass(frozen=True, slots=True)
class UserRow:
    id: str
    username: str
    email: str | None
    full_name: str
    role: str
    disabled: bool
    limits: dict[str, Any]
    created_at: datetime
    last_login_at: datetime | None


class RotationOutcome(Enum):
    ROTATED = "rotated"
    UNKNOWN = "unknown"
    EXPIRED = "expired"
    REVOKED = "revoked"
    """The session ended (logout, an earlier reuse, the user disabled)."""
    REUSED = "reused"
    """The token had already been exchanged: the session is revoked now."""


@dataclass(frozen=True, slots=True)
class Rotation:
    outcome: RotationOutcome
    user_id: str | None = None
    session_id: str | None = None


def _user(row: dict[str, Any]) -> UserRow:
    return UserRow(**row)


def new_id(kind: str) -> str:
    return f"{kind}_{secrets.token_hex(10)}"


class Bound(BoundStore):
    what = "user storage"


class AuthStore(Bound):
    # --- users ------------------------------------------------------------------------------------------------

    async def create_user(
        self, username: str, email: str | None, full_name: str, password_hash: str, role: str | None
    ) -> UserRow:
        """`role` None: "admin" for the very first account, else "user". ALREADY_EXISTS when the username or email
        is anyone's username or email."""
        async with self._pool.connection() as conn, conn.transaction(), conn.cursor(row_factory=dict_row) as cur:
            await cur.execute("SELECT pg_advisory_xact_lock(%s)", [_REGISTER_LOCK])
            names = [n for n in {username.lower(), (email or "").lower()} if n]
            await cur.execute(
                "SELECT 1 FROM auth_users WHERE lower(username) = ANY(%s) OR lower(email) = ANY(%s) LIMIT 1",
                [names, names],
            )
            if await cur.fetchone() is not None:
                raise AlreadyExists("that username or email is already registered", "USER_EXISTS")
            await cur.execute(
                f"""INSERT INTO auth_users (id, username, email, full_name, password_hash, role)
                    VALUES (%s, %s, %s, %s, %s,
                            coalesce(%s, CASE WHEN EXISTS (SELECT 1 FROM auth_users) THEN 'user' ELSE 'admin' END))
                    RETURNING {_USER_COLUMNS}""",
                [new_id("usr"), username, email, full_name, password_hash, role],
            )
            row = await cur.fetchone()
        assert row is not None
        return _user(row)

    async def login_lookup(self, login: str) -> tuple[UserRow, str] | None:
        """The user whose username or email is `login` (case-insensitive), with the password hash."""
        async with self._pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(
                f"""SELECT {_USER_COLUMNS}, password_hash FROM auth_users
                    WHERE lower(username) = lower(%s) OR lower(email) = lower(%s)
                    ORDER BY lower(username) = lower(%s) DESC LIMIT 1""",
                [login, login, login],
            )
            row = await cur.fetchone()
        if row is None:
            return None
        stored = row.pop("password_hash")
        return _user(row), stored

    async def get_user(self, user_id: str) -> UserRow | None:
        async with self._pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(f"SELECT {_USER_COLUMNS} FROM auth_users WHERE id = %s", [user_id])
            row = await cur.fetchone()
        return None if row is None else _user(row)

    async def user_exists(self, username: str) -> bool:
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                "SELECT 1 FROM auth_users WHERE lower(username) = lower(%s) OR lower(email) = lower(%s)",
                [username, username],
            )
            return await cur.fetchone() is not None

    async def list_users(self, role: str | None, limit: int, offset: int) -> tuple[list[UserRow], int]:
        where = "%(role)s::text IS NULL OR role = %(role)s"
        params = {"role": role, "limit": limit, "offset": offset}
        async with self._pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(
                f"""SELECT {_USER_COLUMNS} FROM auth_users WHERE {where}
                    ORDER BY created_at, id LIMIT %(limit)s OFFSET %(offset)s""",
                params,
            )
            rows = await cur.fetchall()
            await cur.execute(f"SELECT count(*) AS n FROM auth_users WHERE {where}", params)
            counted = await cur.fetchone()
        return [_user(r) for r in rows], int(counted["n"]) if counted else 0

    async def update_user(
        self, user_id: str, role: str | None, disabled: bool | None, limits: dict[str, Any] | None
    ) -> UserRow | None:
        """Applies the values that are not None. Refuses (FAILED_PRECONDITION) to leave no enabled admin; disabling
        a user ends their sessions in the same transaction."""
        async with self._pool.connection() as conn, conn.transaction(), conn.cursor(row_factory=dict_row) as cur:
            # Locking every enabled admin serialises concurrent demotions: two admins demoting each other cannot
            # both see "one other admin is left".
            await cur.execute("SELECT id FROM auth_users WHERE role = 'admin' AND NOT disabled ORDER BY id FOR UPDATE")
            admins = {r["id"] for r in await cur.fetchall()}
            await cur.execute("SELECT role, disabled FROM auth_users WHERE id = %s FOR UPDATE", [user_id])
            current = await cur.fetchone()
            if current is None:
                return None
            still_admin = (role or current["role"]) == "admin" and not (
                current["disabled"] if disabled is None else disabled
            )
            if user_id in admins and not still_admin and len(admins) == 1:
                raise FailedPrecondition("this is the only enabled admin; promote another user first", "LAST_ADMIN")
            await cur.execute(
                f"""UPDATE auth_users SET role = coalesce(%s, role), disabled = coalesce(%s, disabled),
                           limits = coalesce(%s, limits)
                    WHERE id = %s RETURNING {_USER_COLUMNS}""",
                [role, disabled, None if limits is None else Jsonb(limits), user_id],
            )
            row = await cur.fetchone()
            if disabled:
                await cur.execute(
                    """UPDATE auth_sessions SET revoked_at = now(), revoked_reason = 'disabled'
                       WHERE user_id = %s AND revoked_at IS NULL""",
                    [user_id],
                )
        return None if row is None else _user(row)

    async def record_login(self, user_id: str, new_password_hash: str | None = None) -> None:
        async with self._pool.connection() as conn:
            await conn.execute(
                """UPDATE auth_users SET last_login_at = now(), password_hash = coalesce(%s, password_hash)
                   WHERE id = %s""",
                [new_password_hash, user_id],
            )

    # --- sessions ---------------------------------------------------------------------------------------------

    async def start_session(self, user_id: str, session_id: str, token_digest: str, expires_at: datetime) -> None:
        async with self._pool.connection() as conn, conn.transaction():
            await conn.execute("INSERT INTO auth_sessions (id, user_id) VALUES (%s, %s)", [session_id, user_id])
            await conn.execute(
                "INSERT INTO auth_refresh_tokens (token_sha256, session_id, expires_at) VALUES (%s, %s, %s)",
                [token_digest, session_id, expires_at],
            )

    async def rotate(self, digest: str, successor_digest: str, successor_expires_at: datetime) -> Rotation:
        """Exchanges a refresh token for its successor, atomically; presenting a rotated token revokes its session."""
        async with self._pool.connection() as conn, conn.transaction(), conn.cursor(row_factory=dict_row) as cur:
            # Two statements, each locking its row: a refresh waiting on the token's lock reads the token as the
            # one before it left it (rotated), and the session read after that is current too. One joined
            # SELECT would lock both but could return the other table's row as of before the wait.
            await cur.execute(
                """SELECT session_id, expires_at < now() AS expired, rotated_at IS NOT NULL AS rotated
                   FROM auth_refresh_tokens WHERE token_sha256 = %s FOR UPDATE""",
                [digest],
            )
            token = await cur.fetchone()
            if token is None:
                return Rotation(RotationOutcome.UNKNOWN)
            session = token["session_id"]
            await cur.execute(
                "SELECT user_id, revoked_at IS NOT NULL AS revoked FROM auth_sessions WHERE id = %s FOR UPDATE",
                [session],
            )
            row = await cur.fetchone()
            if row is None:
                return Rotation(RotationOutcome.UNKNOWN)
            user = row["user_id"]
            if row["revoked"]:
                return Rotation(RotationOutcome.REVOKED, user, session)
            if token["rotated"]:
                await cur.execute(
                    "UPDATE auth_sessions SET revoked_at = now(), revoked_reason = 'reuse' WHERE id = %s", [session]
                )
                return Rotation(RotationOutcome.REUSED, user, session)
            if token["expired"]:
                return Rotation(RotationOutcome.EXPIRED, user, session)
            await cur.execute("UPDATE auth_refresh_tokens SET rotated_at = now() WHERE token_sha256 = %s", [digest])
            await cur.execute(
                "INSERT INTO auth_refresh_tokens (token_sha256, session_id, expires_at) VALUES (%s, %s, %s)",
                [successor_digest, session, successor_expires_at],
            )
        return Rotation(RotationOutcome.ROTATED, user, session)

    async def session_of(self, digest: str) -> tuple[str, str] | None:
        """(session id, user id) of a refresh token, whatever its state."""
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                """SELECT s.id, s.user_id FROM auth_refresh_tokens t JOIN auth_sessions s ON s.id = t.session_id
                   WHERE t.token_sha256 = %s""",
                [digest],
            )
            row = await cur.fetchone()
        return None if row is None else (str(row[0]), str(row[1]))

    async def end_sessions(self, user_id: str, session_id: str | None) -> int:
        """Revokes one of the user's sessions (or, with `session_id` None, all of them); returns how many ended."""
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                """UPDATE auth_sessions SET revoked_at = now(), revoked_reason = 'logout'
                   WHERE user_id = %s AND (%s::text IS NULL OR id = %s) AND revoked_at IS NULL""",
                [user_id, session_id, session_id],
            )
            return cur.rowcount

    async def purge_expired(self) -> int:
        """Deletes refresh tokens past expiry (kept until then so reuse is still detected) and emptied sessions."""
        async with self._pool.connection() as conn, conn.transaction():
            cur = await conn.execute("DELETE FROM auth_refresh_tokens WHERE expires_at < now()")
            purged = cur.rowcount
            await conn.execute(
                """DELETE FROM auth_sessions s WHERE NOT EXISTS
                   (SELECT 1 FROM auth_refresh_tokens t WHERE t.session_id = s.id)"""
            )
        return purged
