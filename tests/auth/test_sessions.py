"""Accounts and login sessions over gRPC: register, login, refresh with rotation, reuse revoking the session,
logout (one or all), disabling, closed registration, and what is stored."""

from __future__ import annotations

from typing import Any

import aiohttp
import grpc
import psycopg
import pytest
from forge.auth.v1 import auth_pb2
from google.protobuf import field_mask_pb2

from forge_rpc.server.app import ForgeApp
from forge_rpc.testing import running_forge
from tests.auth.conftest import PASSWORD, Accounts, bearer, refusal, secured_config, unique
from tests.fakes import FakeUpstream
from tests.rpc.rich_status import reason

pytestmark = pytest.mark.asyncio

UNAUTHENTICATED = grpc.StatusCode.UNAUTHENTICATED
PERMISSION_DENIED = grpc.StatusCode.PERMISSION_DENIED


async def test_register_login_and_who_am_i(accounts: Accounts) -> None:
    name = unique()
    registered = await accounts.stub.Register(
        auth_pb2.RegisterRequest(username=name, email=f"{name}@example.com", password=PASSWORD, full_name="Ada")
    )
    assert registered.message == "User registered successfully" and not registered.verification_required
    assert registered.user_id.startswith("usr_") and registered.user.role == "user"

    session = await accounts.login(name)
    assert session.token_type == "bearer" and session.expires_in == 15 * 60
    assert session.refresh_expires_in == 30 * 24 * 3600 and session.refresh_token != session.access_token
    me = await accounts.stub.GetCurrentUser(auth_pb2.GetCurrentUserRequest(), metadata=bearer(session.access_token))
    assert (me.id, me.username, me.email, me.full_name, me.role) == (
        registered.user_id, name, f"{name}@example.com", "Ada", "user"
    )  # fmt: skip
    assert me.HasField("last_login_at")
    # The email logs in too, in any case.
    by_email = await accounts.login(f"{name.upper()}@EXAMPLE.COM")
    assert by_email.user.id == registered.user_id


async def test_login_over_rest_takes_the_seeds_email_key(secured: ForgeApp, accounts: Accounts) -> None:
    name = unique()
    await accounts.register(name)
    async with aiohttp.ClientSession(base_url=f"http://127.0.0.1:{secured.http_port}") as http:
        async with http.post("/auth/login", json={"email": name, "password": PASSWORD}) as resp:
            assert resp.status == 200, await resp.text()
            body = await resp.json()
        assert body["token_type"] == "bearer" and body["user"]["username"] == name
        async with http.get("/api/v1/auth/me", headers={"Authorization": f"Bearer {body['access_token']}"}) as resp:
            assert resp.status == 200 and (await resp.json())["username"] == name
        async with http.post("/auth/login", json={"email": name, "password": "wrong password"}) as resp:
            assert resp.status == 401
            assert (await resp.json())["code"] == "INVALID_CREDENTIALS"


async def test_a_wrong_password_and_an_unknown_user_look_the_same(accounts: Accounts) -> None:
    name = unique()
    await accounts.register(name)
    wrong = await refusal(accounts.login(name, "not the password"))
    unknown = await refusal(accounts.login(unique("nobody")))
    for err in (wrong, unknown):
        assert err.code() == UNAUTHENTICATED and reason(err) == "INVALID_CREDENTIALS"
    assert wrong.details() == unknown.details()
    huge = await refusal(accounts.login(name, "x" * 5000))  # bounded before any hashing
    assert huge.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_refresh_rotates_and_reuse_revokes_the_session(accounts: Accounts) -> None:
    name = unique()
    await accounts.register(name)
    first = await accounts.login(name)
    other = await accounts.login(name)  # a second device: its own session

    second = await accounts.stub.Refresh(auth_pb2.RefreshRequest(refresh_token=first.refresh_token))
    assert second.refresh_token != first.refresh_token and second.access_token != first.access_token
    me = await accounts.stub.GetCurrentUser(auth_pb2.GetCurrentUserRequest(), metadata=bearer(second.access_token))
    assert me.username == name

    # The first refresh token again: someone replayed it. The whole session goes, its newest token included.
    reused = await refusal(accounts.stub.Refresh(auth_pb2.RefreshRequest(refresh_token=first.refresh_token)))
    assert reused.code() == UNAUTHENTICATED and reason(reused) == "REFRESH_TOKEN_REUSED"
    revoked = await refusal(accounts.stub.Refresh(auth_pb2.RefreshRequest(refresh_token=second.refresh_token)))
    assert revoked.code() == UNAUTHENTICATED and reason(revoked) == "SESSION_REVOKED"

    # The other device's session is untouched.
    still = await accounts.stub.Refresh(auth_pb2.RefreshRequest(refresh_token=other.refresh_token))
    assert still.user.username == name


async def test_tokens_are_not_interchangeable(accounts: Accounts) -> None:
    session = await accounts.new_user()
    as_refresh = await refusal(accounts.stub.Refresh(auth_pb2.RefreshRequest(refresh_token=session.access_token)))
    assert as_refresh.code() == UNAUTHENTICATED and reason(as_refresh) == "TOKEN_WRONG_TYPE"
    as_access = await refusal(
        accounts.stub.GetCurrentUser(auth_pb2.GetCurrentUserRequest(), metadata=bearer(session.refresh_token))
    )
    assert as_access.code() == UNAUTHENTICATED and reason(as_access) == "TOKEN_WRONG_TYPE"
    garbage = await refusal(accounts.stub.Refresh(auth_pb2.RefreshRequest(refresh_token="not-a-token")))
    assert garbage.code() == UNAUTHENTICATED


async def test_logout_ends_one_session_or_all(accounts: Accounts) -> None:
    name = unique()
    await accounts.register(name)
    laptop, phone, tablet = [await accounts.login(name) for _ in range(3)]

    out = await accounts.stub.Logout(auth_pb2.LogoutRequest(), metadata=bearer(laptop.access_token))
    assert out.success and out.sessions_revoked == 1
    ended = await refusal(accounts.stub.Refresh(auth_pb2.RefreshRequest(refresh_token=laptop.refresh_token)))
    assert reason(ended) == "SESSION_REVOKED"
    phone = await accounts.stub.Refresh(auth_pb2.RefreshRequest(refresh_token=phone.refresh_token))

    # By refresh token: only that session.
    by_token = auth_pb2.LogoutRequest(refresh_token=tablet.refresh_token)
    assert (await accounts.stub.Logout(by_token, metadata=bearer(phone.access_token))).sessions_revoked == 1
    everywhere = auth_pb2.LogoutRequest(all_sessions=True)
    out = await accounts.stub.Logout(everywhere, metadata=bearer(phone.access_token))
    assert out.sessions_revoked == 1  # the phone's: the others had ended already
    for token in (phone.refresh_token, tablet.refresh_token):
        err = await refusal(accounts.stub.Refresh(auth_pb2.RefreshRequest(refresh_token=token)))
        assert err.code() == UNAUTHENTICATED


async def test_another_users_refresh_token_cannot_be_logged_out(accounts: Accounts) -> None:
    alice, bob = await accounts.new_user(), await accounts.new_user()
    request = auth_pb2.LogoutRequest(refresh_token=bob.refresh_token)
    err = await refusal(accounts.stub.Logout(request, metadata=bearer(alice.access_token)))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert (await accounts.stub.Refresh(auth_pb2.RefreshRequest(refresh_token=bob.refresh_token))).user.id


async def test_disabling_a_user_locks_them_out_at_once(accounts: Accounts) -> None:
    admin = await accounts.admin()
    session = await accounts.new_user()
    user_id, name = session.user.id, session.user.username
    disable = auth_pb2.UpdateUserRequest(user_id=user_id, user=auth_pb2.User(disabled=True))
    assert (await accounts.stub.UpdateUser(disable, metadata=bearer(admin.access_token))).disabled

    who = await refusal(
        accounts.stub.GetCurrentUser(auth_pb2.GetCurrentUserRequest(), metadata=bearer(session.access_token))
    )
    assert who.code() == PERMISSION_DENIED and reason(who) == "USER_DISABLED"
    login = await refusal(accounts.login(name))
    assert login.code() == PERMISSION_DENIED and reason(login) == "USER_DISABLED"
    refresh = await refusal(accounts.stub.Refresh(auth_pb2.RefreshRequest(refresh_token=session.refresh_token)))
    assert reason(refresh) == "SESSION_REVOKED"

    # Re-enabling names the field: proto3 cannot tell an unset `disabled` from false.
    enable = auth_pb2.UpdateUserRequest(
        user_id=user_id, user=auth_pb2.User(disabled=False), update_mask=field_mask_pb2.FieldMask(paths=["disabled"])
    )
    assert not (await accounts.stub.UpdateUser(enable, metadata=bearer(admin.access_token))).disabled
    assert (await accounts.login(name)).user.id == user_id


async def test_admin_manages_users(accounts: Accounts) -> None:
    admin = await accounts.admin()
    session = await accounts.new_user()
    md = bearer(admin.access_token)
    limits = auth_pb2.Limits(requests_per_minute=7, budget_usd=1.5, budget_period="day")
    update = auth_pb2.UpdateUserRequest(user_id=session.user.id, user=auth_pb2.User(role="admin", limits=limits))
    changed = await accounts.stub.UpdateUser(update, metadata=md)
    assert changed.role == "admin" and changed.limits.requests_per_minute == 7 and changed.limits.budget_period == "day"
    # One limit cleared by mask, the rest kept.
    clear = auth_pb2.UpdateUserRequest(
        user_id=session.user.id,
        user=auth_pb2.User(),
        update_mask=field_mask_pb2.FieldMask(paths=["limits.requests_per_minute"]),
    )
    cleared = await accounts.stub.UpdateUser(clear, metadata=md)
    assert not cleared.limits.HasField("requests_per_minute") and cleared.limits.budget_usd == 1.5

    # Promoted at once: the new admin may list users (the role is read per call, not baked into the token).
    listing = await accounts.stub.ListUsers(
        auth_pb2.ListUsersRequest(role="admin", page_size=1000), metadata=bearer(session.access_token)
    )
    assert session.user.id in {u.id for u in listing.users} and all(u.role == "admin" for u in listing.users)
    page = await accounts.stub.ListUsers(auth_pb2.ListUsersRequest(page_size=1), metadata=md)
    assert len(page.users) == 1 and page.next_page_token

    bad = auth_pb2.UpdateUserRequest(user_id=session.user.id, user=auth_pb2.User(role="root"))
    assert (await refusal(accounts.stub.UpdateUser(bad, metadata=md))).code() == grpc.StatusCode.INVALID_ARGUMENT
    missing = auth_pb2.UpdateUserRequest(user_id="usr_nobody", user=auth_pb2.User(role="user"))
    assert (await refusal(accounts.stub.UpdateUser(missing, metadata=md))).code() == grpc.StatusCode.NOT_FOUND


async def test_registration_checks_its_input(accounts: Accounts) -> None:
    taken = unique()
    await accounts.stub.Register(
        auth_pb2.RegisterRequest(username=taken, email=f"{taken}@example.com", password=PASSWORD)
    )
    cases: list[tuple[auth_pb2.RegisterRequest, grpc.StatusCode, str]] = [
        (auth_pb2.RegisterRequest(username=unique(), password="short"), grpc.StatusCode.INVALID_ARGUMENT, "password"),
        (auth_pb2.RegisterRequest(email="not-an-email", password=PASSWORD), grpc.StatusCode.INVALID_ARGUMENT, "email"),
        (auth_pb2.RegisterRequest(password=PASSWORD), grpc.StatusCode.INVALID_ARGUMENT, "username"),
        (auth_pb2.RegisterRequest(username="a b<c>", password=PASSWORD), grpc.StatusCode.INVALID_ARGUMENT, "username"),
        (auth_pb2.RegisterRequest(username=taken.upper(), password=PASSWORD), grpc.StatusCode.ALREADY_EXISTS, ""),
        # Another account's email as a username would make logins ambiguous.
        (
            auth_pb2.RegisterRequest(username=f"{taken}@example.com", password=PASSWORD),
            grpc.StatusCode.ALREADY_EXISTS,
            "",
        ),
    ]
    for request, code, field in cases:
        err = await refusal(accounts.stub.Register(request))
        assert err.code() == code, (request, err.details())
        assert field in str(err.details())


async def test_passwords_are_stored_as_argon2id(accounts: Accounts, db: psycopg.AsyncConnection[Any]) -> None:
    registered = await accounts.register()
    row = await (
        await db.execute("SELECT password_hash FROM auth_users WHERE id = %s", [registered.user_id])
    ).fetchone()
    assert row is not None
    stored = str(row[0])
    assert stored.startswith("$argon2id$") and "m=65536" in stored and PASSWORD not in stored


async def test_a_stale_token_does_not_block_login_or_refresh(accounts: Accounts) -> None:
    session = await accounts.new_user()
    stale = bearer("eyJhbGciOiJIUzI1NiJ9.e30.not-a-signature")
    again = await accounts.login(session.user.username, md=stale)
    refreshed = await accounts.stub.Refresh(auth_pb2.RefreshRequest(refresh_token=again.refresh_token), metadata=stale)
    assert refreshed.user.id == session.user.id


async def test_closed_registration_leaves_account_creation_to_admins(fake: FakeUpstream) -> None:
    async with (
        running_forge(secured_config(fake, allow_registration=False), http=False) as app,
        grpc.aio.insecure_channel(f"127.0.0.1:{app.grpc_port}") as channel,
    ):
        accounts = Accounts(channel, app)
        err = await refusal(accounts.register())
        assert err.code() == PERMISSION_DENIED and reason(err) == "REGISTRATION_CLOSED"
        admin = await accounts.admin()
        made = await accounts.register(md=bearer(admin.access_token))
        assert made.user.role == "user"
        assert (await accounts.login(made.user.username)).user.id == made.user_id
