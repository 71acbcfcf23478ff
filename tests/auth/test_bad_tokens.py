"""Forged and broken bearer tokens are UNAUTHENTICATED, each with a reason: `alg: none`, another algorithm,
expired, wrong signature, wrong audience or issuer, no type, a refresh token as an access token, garbage.
Over gRPC and over the edge (401, and the OpenAI SDK's AuthenticationError)."""

from __future__ import annotations

import base64
import json
import time
from typing import Any

import aiohttp
import grpc
import jwt
import openai
import pytest
from forge.auth.v1 import auth_pb2

from forge_rpc.server.app import ForgeApp
from tests.auth.conftest import SECRET, Accounts, bearer, refusal
from tests.rpc.rich_status import reason

pytestmark = pytest.mark.asyncio


def _b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def _claims(user_id: str, **changes: Any) -> dict[str, Any]:
    now = int(time.time())
    claims: dict[str, Any] = {
        "iss": "forge", "aud": "forge", "sub": user_id, "sid": "ses_x", "jti": "j", "typ": "access",
        "iat": now, "exp": now + 600,
    }  # fmt: skip
    claims.update(changes)
    return {k: v for k, v in claims.items() if v is not None}


def forged(user_id: str, kind: str) -> str:
    if kind == "alg_none":
        return f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{_b64(_claims(user_id))}."
    if kind == "hs512":
        return jwt.encode(_claims(user_id), SECRET, algorithm="HS512")
    if kind == "expired":
        return jwt.encode(_claims(user_id, iat=int(time.time()) - 7200, exp=int(time.time()) - 3600), SECRET)
    if kind == "wrong_signature":
        return jwt.encode(_claims(user_id), "another-secret-of-sufficient-length-0123456789", algorithm="HS256")
    if kind == "wrong_audience":
        return jwt.encode(_claims(user_id, aud="someone-else"), SECRET, algorithm="HS256")
    if kind == "wrong_issuer":
        return jwt.encode(_claims(user_id, iss="evil"), SECRET, algorithm="HS256")
    if kind == "no_type":
        return jwt.encode(_claims(user_id, typ=None), SECRET, algorithm="HS256")
    if kind == "unknown_user":
        return jwt.encode(_claims("usr_nobody"), SECRET, algorithm="HS256")
    if kind == "garbage":
        return "definitely.not.a-jwt"
    raise AssertionError(kind)


CASES = {
    "alg_none": "TOKEN_ALGORITHM_NOT_ALLOWED",
    "hs512": "TOKEN_ALGORITHM_NOT_ALLOWED",
    "expired": "TOKEN_EXPIRED",
    "wrong_signature": "TOKEN_INVALID_SIGNATURE",
    "wrong_audience": "TOKEN_INVALID_AUDIENCE",
    "wrong_issuer": "TOKEN_INVALID_ISSUER",
    "no_type": "TOKEN_INVALID",
    "unknown_user": "TOKEN_INVALID",
    "garbage": "TOKEN_MALFORMED",
}


async def test_a_token_signed_right_is_accepted(accounts: Accounts) -> None:
    """The forging works: the same claims, correctly signed, pass — so the refusals below are about the flaw."""
    session = await accounts.new_user()
    token = jwt.encode(_claims(session.user.id), SECRET, algorithm="HS256")
    me = await accounts.stub.GetCurrentUser(auth_pb2.GetCurrentUserRequest(), metadata=bearer(token))
    assert me.id == session.user.id


@pytest.mark.parametrize(("kind", "why"), CASES.items())
async def test_bad_tokens_are_unauthenticated(accounts: Accounts, kind: str, why: str) -> None:
    session = await accounts.new_user()
    err = await refusal(
        accounts.stub.GetCurrentUser(auth_pb2.GetCurrentUserRequest(), metadata=bearer(forged(session.user.id, kind)))
    )
    assert err.code() == grpc.StatusCode.UNAUTHENTICATED
    assert reason(err) == why


async def test_a_refresh_token_is_not_an_access_token(accounts: Accounts) -> None:
    session = await accounts.new_user()
    err = await refusal(
        accounts.stub.ListApiKeys(auth_pb2.ListApiKeysRequest(), metadata=bearer(session.refresh_token))
    )
    assert err.code() == grpc.StatusCode.UNAUTHENTICATED


@pytest.mark.parametrize("header", ["Basic dXNlcjpwYXNz", "Bearer", "Bearer    "])
async def test_other_schemes_and_empty_bearers_are_unauthenticated(accounts: Accounts, header: str) -> None:
    err = await refusal(
        accounts.stub.GetCurrentUser(auth_pb2.GetCurrentUserRequest(), metadata=(("authorization", header),))
    )
    assert err.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_bad_tokens_over_the_edge_are_401(secured: ForgeApp, accounts: Accounts) -> None:
    session = await accounts.new_user()
    async with aiohttp.ClientSession(base_url=f"http://127.0.0.1:{secured.http_port}") as http:
        for kind, why in CASES.items():
            headers = {"Authorization": f"Bearer {forged(session.user.id, kind)}"}
            async with http.get("/api/v1/auth/me", headers=headers) as resp:
                assert resp.status == 401, kind
                body = await resp.json()
            assert body["code"] == why and body["detail"]
        async with http.get("/api/v1/models") as resp:
            assert resp.status == 401 and (await resp.json())["code"] == "CREDENTIALS_MISSING"


async def test_the_openai_sdk_raises_authentication_error(secured: ForgeApp, accounts: Accounts) -> None:
    session = await accounts.new_user()
    base = f"http://127.0.0.1:{secured.http_port}/v1"
    for key in ("sk-not-a-forge-key", "fk_unknown", forged(session.user.id, "expired")):
        client = openai.AsyncOpenAI(api_key=key, base_url=base, max_retries=0)
        async with client:
            with pytest.raises(openai.AuthenticationError):
                await client.chat.completions.create(model="fake", messages=[{"role": "user", "content": "hi"}])
            with pytest.raises(openai.AuthenticationError):
                await client.models.list()
