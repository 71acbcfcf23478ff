"""The auth store on a database of its own: the first account is the admin, the last enabled admin cannot be
demoted or disabled, and concurrent refreshes with one token let exactly one through (the other is reuse)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import pytest_asyncio
from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

from forge_rpc.adapters.store import create_pool
from forge_rpc.adapters.store.auth_store import AuthStore, RotationOutcome
from forge_rpc.domain import ForgeError

pytestmark = pytest.mark.asyncio

LATER = datetime.now(UTC) + timedelta(days=1)


@pytest_asyncio.fixture
async def database_url(fresh_database: Callable[[], Awaitable[str]]) -> str:
    return await fresh_database()


@pytest_asyncio.fixture
async def store(database_url: str) -> AsyncIterator[AuthStore]:
    pool: AsyncConnectionPool[AsyncConnection[Any]] = create_pool(database_url, max_size=4)
    await pool.open(wait=True)
    try:
        yield AuthStore(pool)
    finally:
        await pool.close()


async def test_the_first_account_is_the_admin(store: AuthStore) -> None:
    first = await store.create_user("first", None, "", "hash", None)
    second = await store.create_user("second", "second@example.com", "", "hash", None)
    assert (first.role, second.role) == ("admin", "user")
    with pytest.raises(ForgeError) as info:
        await store.create_user("SECOND@example.com", None, "", "hash", None)
    assert info.value.reason == "USER_EXISTS"


async def test_racing_registrations_make_one_admin(store: AuthStore) -> None:
    users = await asyncio.gather(*(store.create_user(f"racer{i}", None, "", "hash", None) for i in range(4)))
    assert sorted(u.role for u in users) == ["admin", "user", "user", "user"]


async def test_the_last_enabled_admin_stays_one(store: AuthStore) -> None:
    admin = await store.create_user("root", None, "", "hash", None)
    for role, disabled in (("user", None), (None, True)):
        with pytest.raises(ForgeError) as info:
            await store.update_user(admin.id, role, disabled, None)
        assert info.value.reason == "LAST_ADMIN"
    other = await store.create_user("deputy", None, "", "hash", "admin")
    demoted = await store.update_user(admin.id, "user", None, None)
    assert demoted is not None and demoted.role == "user"
    with pytest.raises(ForgeError):
        await store.update_user(other.id, None, True, None)


async def _waiting_on_locks(conn: AsyncConnection[Any], count: int) -> None:
    async with asyncio.timeout(10):
        while True:
            cur = await conn.execute(
                """SELECT count(*) FROM pg_stat_activity
                   WHERE wait_event_type = 'Lock' AND datname = current_database()"""
            )
            row = await cur.fetchone()
            if row is not None and row[0] >= count:
                return
            await asyncio.sleep(0.01)  # polling an observable condition, not waiting for time to pass


async def test_one_refresh_token_rotates_once(store: AuthStore, database_url: str) -> None:
    user = await store.create_user("u", None, "", "hash", None)
    await store.start_session(user.id, "ses_1", "t0", LATER)
    async with (
        await AsyncConnection.connect(database_url) as holder,
        await AsyncConnection.connect(database_url, autocommit=True) as spy,
    ):
        # Hold the token so that three refreshes start (and take their snapshots) before any of them can proceed:
        # the worst case, where a refresh reads the token as it was before the others rotated it.
        await holder.execute("SELECT 1 FROM auth_refresh_tokens WHERE token_sha256 = 't0' FOR UPDATE")
        racing = [asyncio.create_task(store.rotate("t0", f"t1-{i}", LATER)) for i in range(3)]
        await _waiting_on_locks(spy, 3)
        await holder.rollback()
        outcomes = [(await task).outcome for task in racing]
    assert sorted(o.value for o in outcomes) == ["reused", "revoked", "rotated"]
    # The session is gone: even the winner's successor is refused.
    for i in range(3):
        assert (await store.rotate(f"t1-{i}", "t2", LATER)).outcome in (
            RotationOutcome.REVOKED,
            RotationOutcome.UNKNOWN,
        )
    assert (await store.rotate("unknown", "t3", LATER)).outcome is RotationOutcome.UNKNOWN


async def test_expired_refresh_tokens_are_refused_and_purged(store: AuthStore) -> None:
    user = await store.create_user("u", None, "", "hash", None)
    await store.start_session(user.id, "ses_old", "old", datetime.now(UTC) - timedelta(seconds=1))
    assert (await store.rotate("old", "new", LATER)).outcome is RotationOutcome.EXPIRED
    assert await store.purge_expired() == 1
    assert await store.session_of("old") is None
