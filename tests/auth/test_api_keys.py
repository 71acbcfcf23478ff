"""API keys: the secret shown once and stored as a hash, revocation at once, expiry, scopes, allowed models,
isolation between users (and admins seeing all), and last use recorded off the request path."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
import psycopg
import pytest
from forge.auth.v1 import auth_pb2
from forge.chat.v1 import chat_pb2, chat_pb2_grpc
from forge.rag.v1 import rag_pb2, rag_pb2_grpc
from google.protobuf.timestamp_pb2 import Timestamp

from forge_rpc.testing import running_forge
from tests.auth.conftest import Accounts, bearer, refusal, secured_config
from tests.fakes import FakeUpstream
from tests.rpc.rich_status import reason

pytestmark = pytest.mark.asyncio

UNAUTHENTICATED = grpc.StatusCode.UNAUTHENTICATED
PERMISSION_DENIED = grpc.StatusCode.PERMISSION_DENIED


def whoami(accounts: Accounts, md: tuple[tuple[str, str], ...]) -> Any:
    return accounts.stub.GetCurrentUser(auth_pb2.GetCurrentUserRequest(), metadata=md)


def chat(channel: grpc.aio.Channel, secret: str, model: str = "fake") -> Any:
    stub = chat_pb2_grpc.ChatServiceStub(channel)
    request = chat_pb2.CreateChatCompletionRequest(chat=chat_pb2.ChatRequest(model=model, prompt="hi"))
    return stub.CreateChatCompletion(request, metadata=bearer(secret))


@pytest.fixture
def channel(accounts: Accounts) -> grpc.aio.Channel:
    return accounts.channel


async def test_the_secret_is_shown_once_and_stored_hashed(accounts: Accounts, db: psycopg.AsyncConnection[Any]) -> None:
    session = await accounts.new_user()
    created = await accounts.new_key(session, name="ci")
    secret, key = created.secret, created.api_key
    assert secret.startswith("fk_") and key.prefix == f"{secret[:10]}…" and key.name == "ci"
    assert list(key.scopes) == ["*"] and key.user_id == session.user.id and not key.revoked

    md = bearer(session.access_token)
    shown = await accounts.stub.GetApiKey(auth_pb2.GetApiKeyRequest(key_id=key.id), metadata=md)
    listed = await accounts.stub.ListApiKeys(auth_pb2.ListApiKeysRequest(), metadata=md)
    assert [k.id for k in listed.api_keys] == [key.id]
    for message in (shown, listed):
        assert secret.encode() not in message.SerializeToString()

    row = await (await db.execute("SELECT row_to_json(k)::text, secret_sha256 FROM auth_api_keys k WHERE id = %s",
                                  [key.id])).fetchone()  # fmt: skip
    assert row is not None
    assert secret not in row[0] and row[1] == hashlib.sha256(secret.encode()).hexdigest()

    # It authenticates as its user, as a bearer token or as x-api-key.
    assert (await whoami(accounts, bearer(secret))).id == session.user.id
    assert (await whoami(accounts, (("x-api-key", secret),))).id == session.user.id


async def test_a_revoked_key_stops_at_once(accounts: Accounts) -> None:
    session = await accounts.new_user()
    created = await accounts.new_key(session)
    assert (await whoami(accounts, bearer(created.secret))).id == session.user.id  # now cached
    md = bearer(session.access_token)
    revoked = await accounts.stub.RevokeApiKey(auth_pb2.RevokeApiKeyRequest(key_id=created.api_key.id), metadata=md)
    assert revoked.revoked and revoked.HasField("revoked_at")

    err = await refusal(whoami(accounts, bearer(created.secret)))
    assert err.code() == UNAUTHENTICATED and reason(err) == "API_KEY_REVOKED"
    assert not (await accounts.stub.ListApiKeys(auth_pb2.ListApiKeysRequest(), metadata=md)).api_keys
    with_revoked = await accounts.stub.ListApiKeys(auth_pb2.ListApiKeysRequest(include_revoked=True), metadata=md)
    assert [k.revoked for k in with_revoked.api_keys] == [True]


async def test_unknown_and_expired_keys_are_unauthenticated(
    accounts: Accounts, db: psycopg.AsyncConnection[Any]
) -> None:
    unknown = await refusal(whoami(accounts, bearer("fk_" + "x" * 43)))
    assert unknown.code() == UNAUTHENTICATED and reason(unknown) == "API_KEY_INVALID"

    session = await accounts.new_user()
    later = Timestamp()
    later.FromDatetime(datetime.now(UTC) + timedelta(days=1))
    created = await accounts.new_key(session, expires_at=later)
    assert created.api_key.HasField("expires_at")
    # Its day is over (set in the table before first use, so no replica has it cached).
    await db.execute(
        "UPDATE auth_api_keys SET expires_at = now() - interval '1 second' WHERE id = %s", [created.api_key.id]
    )
    expired = await refusal(whoami(accounts, bearer(created.secret)))
    assert expired.code() == UNAUTHENTICATED and reason(expired) == "API_KEY_EXPIRED"

    past = Timestamp()
    past.FromDatetime(datetime.now(UTC) - timedelta(days=1))
    err = await refusal(accounts.new_key(session, expires_at=past))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_users_see_and_revoke_only_their_own_keys(accounts: Accounts) -> None:
    alice, bob, admin = await accounts.new_user(), await accounts.new_user(), await accounts.admin()
    key = (await accounts.new_key(alice)).api_key
    as_bob = bearer(bob.access_token)

    for call in (
        accounts.stub.GetApiKey(auth_pb2.GetApiKeyRequest(key_id=key.id), metadata=as_bob),
        accounts.stub.RevokeApiKey(auth_pb2.RevokeApiKeyRequest(key_id=key.id), metadata=as_bob),
    ):
        err = await refusal(call)
        assert err.code() == grpc.StatusCode.NOT_FOUND  # as if it did not exist
    assert not (await accounts.stub.ListApiKeys(auth_pb2.ListApiKeysRequest(), metadata=as_bob)).api_keys
    for whose in (alice.user.id, "*"):
        err = await refusal(accounts.stub.ListApiKeys(auth_pb2.ListApiKeysRequest(user_id=whose), metadata=as_bob))
        assert err.code() == PERMISSION_DENIED
    other = auth_pb2.CreateApiKeyRequest(name="for alice", user_id=alice.user.id)
    assert (await refusal(accounts.stub.CreateApiKey(other, metadata=as_bob))).code() == PERMISSION_DENIED

    # Admins see and revoke anyone's, and create keys for others.
    as_admin = bearer(admin.access_token)
    listed = await accounts.stub.ListApiKeys(auth_pb2.ListApiKeysRequest(user_id=alice.user.id), metadata=as_admin)
    assert [k.id for k in listed.api_keys] == [key.id]
    everyone = await accounts.stub.ListApiKeys(
        auth_pb2.ListApiKeysRequest(user_id="*", page_size=1000), metadata=as_admin
    )
    assert key.id in {k.id for k in everyone.api_keys}
    made = await accounts.stub.CreateApiKey(other, metadata=as_admin)
    assert made.api_key.user_id == alice.user.id
    gone = await accounts.stub.RevokeApiKey(auth_pb2.RevokeApiKeyRequest(key_id=key.id), metadata=as_admin)
    assert gone.revoked


async def test_scopes_narrow_a_key(accounts: Accounts, channel: grpc.aio.Channel) -> None:
    session = await accounts.new_user()
    chat_only = (await accounts.new_key(session, scopes=["chat"])).secret
    rag_writer = (await accounts.new_key(session, scopes=["rag:write"])).secret
    rag = rag_pb2_grpc.RagServiceStub(channel)

    assert (await chat(channel, chat_only)).choices[0].message.content
    err = await refusal(rag.ListNamespaces(rag_pb2.ListNamespacesRequest(), metadata=bearer(chat_only)))
    assert err.code() == PERMISSION_DENIED and reason(err) == "SCOPE_MISSING"
    await rag.ListNamespaces(rag_pb2.ListNamespacesRequest(), metadata=bearer(rag_writer))  # write includes read
    err = await refusal(chat(channel, rag_writer))
    assert err.code() == PERMISSION_DENIED and reason(err) == "SCOPE_MISSING"
    # A narrowed key cannot mint a wider one, nor list keys.
    err = await refusal(accounts.stub.CreateApiKey(auth_pb2.CreateApiKeyRequest(name="x"), metadata=bearer(chat_only)))
    assert err.code() == PERMISSION_DENIED
    # Any key may ask who it is.
    assert (await whoami(accounts, bearer(chat_only))).id == session.user.id


async def test_scopes_are_checked_when_created(accounts: Accounts) -> None:
    session, admin = await accounts.new_user(), await accounts.admin()
    for scopes in (["root"], ["admin"]):  # unknown; and "admin" for a user who is not one
        err = await refusal(accounts.new_key(session, scopes=scopes))
        assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and "scopes[0]" in str(err.details())
    assert list((await accounts.new_key(admin, scopes=["admin"])).api_key.scopes) == ["admin"]


async def test_allowed_models_are_enforced(accounts: Accounts, channel: grpc.aio.Channel) -> None:
    session = await accounts.new_user()
    only_fake = await accounts.new_key(session, allowed_models=["fake"])
    assert list(only_fake.api_key.allowed_models) == ["fake"]
    assert (await chat(channel, only_fake.secret, "fake")).choices[0].message.content
    assert (await chat(channel, only_fake.secret, "")).choices[0].message.content  # the default model is "fake"
    err = await refusal(chat(channel, only_fake.secret, "fake/gpt-other"))
    assert err.code() == PERMISSION_DENIED and reason(err) == "MODEL_NOT_ALLOWED"

    globbed = (await accounts.new_key(session, allowed_models=["fake/gpt-*"])).secret
    assert (await chat(channel, globbed, "fake/gpt-other")).choices[0].message.content
    for model in ("fake", ""):  # the default model, "fake", does not match the glob
        err = await refusal(chat(channel, globbed, model))
        assert err.code() == PERMISSION_DENIED and reason(err) == "MODEL_NOT_ALLOWED"
    batch = chat_pb2.BatchCreateChatCompletionsRequest(
        requests=[chat_pb2.ChatRequest(model="fake/gpt-a", prompt="hi"), chat_pb2.ChatRequest(model="x", prompt="hi")]
    )
    stub = chat_pb2_grpc.ChatServiceStub(channel)
    err = await refusal(stub.BatchCreateChatCompletions(batch, metadata=bearer(globbed)))
    assert err.code() == PERMISSION_DENIED and "requests[1].model" in str(err.details())

    # A key limited to some models cannot create keys without that limit.
    err = await refusal(accounts.stub.CreateApiKey(auth_pb2.CreateApiKeyRequest(name="x"), metadata=bearer(globbed)))
    assert err.code() == PERMISSION_DENIED and reason(err) == "KEY_RESTRICTED"


async def test_a_disabled_users_keys_stop_working(accounts: Accounts) -> None:
    session, admin = await accounts.new_user(), await accounts.admin()
    secret = (await accounts.new_key(session)).secret
    disable = auth_pb2.UpdateUserRequest(user_id=session.user.id, user=auth_pb2.User(disabled=True))
    await accounts.stub.UpdateUser(disable, metadata=bearer(admin.access_token))
    err = await refusal(whoami(accounts, bearer(secret)))
    assert err.code() == PERMISSION_DENIED and reason(err) == "USER_DISABLED"


async def test_last_use_is_written_off_the_request_path(fake: FakeUpstream) -> None:
    async with running_forge(secured_config(fake), http=False) as app:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{app.grpc_port}") as ch:
            accounts = Accounts(ch, app)
            session = await accounts.new_user()
            created = await accounts.new_key(session)
            assert not created.api_key.HasField("last_used_at")
            await whoami(accounts, bearer(created.secret))
        url = app.config.storage.database_url
        assert url is not None
    # forge stopped: its last batch of key uses was written on the way out.
    async with await psycopg.AsyncConnection.connect(url) as conn:
        cur = await conn.execute("SELECT last_used_at FROM auth_api_keys WHERE id = %s", [created.api_key.id])
        row = await cur.fetchone()
    assert row is not None and row[0] is not None


async def test_limits_are_kept_with_the_key(accounts: Accounts) -> None:
    session = await accounts.new_user()
    limits = auth_pb2.Limits(requests_per_minute=5, tokens_per_minute=1000, budget_period="month")
    created = await accounts.new_key(session, limits=limits)
    shown = await accounts.stub.GetApiKey(
        auth_pb2.GetApiKeyRequest(key_id=created.api_key.id), metadata=bearer(session.access_token)
    )
    assert shown.limits == limits
    bad = auth_pb2.Limits(requests_per_minute=-1, budget_period="week")
    err = await refusal(accounts.new_key(session, limits=bad))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "limits.requests_per_minute" in str(err.details()) and "limits.budget_period" in str(err.details())
