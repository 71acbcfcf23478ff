"""Auth without a server: the access table covers every RPC, access decisions, scopes and model globs, model
fields found in requests, model-name rules, tokens, the auth config section and the signing-key file."""

from __future__ import annotations

import stat
import time
from pathlib import Path

import jwt
import pytest
from forge.chat.v1 import chat_pb2
from forge.models.v1 import models_pb2
from forge.rag.v1 import rag_pb2
from forge.registry import SERVICES

from forge_rpc.adapters.auth import TokenCodec, load_or_create_secret, new_api_key, secret_digest
from forge_rpc.domain import ErrorCode, ForgeError
from forge_rpc.domain.identity import ANONYMOUS, LOCAL, Principal, Role
from forge_rpc.domain.validation import model_name_violation
from forge_rpc.server.access import ACCESS, Level, access_for, authorize, missing_entries
from forge_rpc.server.config import ConfigError
from forge_rpc.server.config.auth import parse_auth
from forge_rpc.server.request_models import model_fields

SECRET = "unit-test-signing-key-0123456789abcdef"
USER = Principal(user_id="usr_1", role=Role.USER)
ADMIN = Principal(user_id="usr_2", role=Role.ADMIN)


def _rpcs() -> set[str]:
    return {f"/{s.full_name}/{m.name}" for s in SERVICES for m in s.methods}


def test_every_rpc_has_an_access_entry() -> None:
    assert missing_entries(SERVICES) == []
    assert set(ACCESS) == _rpcs()  # and no entry for an RPC that no longer exists


def test_missing_entries_names_an_unlisted_rpc() -> None:
    table = {k: v for k, v in ACCESS.items() if k != "/forge.chat.v1.ChatService/CreateChatCompletion"}
    assert missing_entries(SERVICES, table) == ["/forge.chat.v1.ChatService/CreateChatCompletion"]
    assert access_for("/forge.x.v1.New/Method").level is Level.ADMIN  # deny by default


def test_public_rpcs_are_only_health_and_getting_a_session() -> None:
    public = {name for name, a in ACCESS.items() if a.level is Level.PUBLIC}
    assert public == {
        "/forge.routing.v1.RoutingService/GetHealth",
        "/forge.auth.v1.AuthService/Register",
        "/forge.auth.v1.AuthService/Login",
        "/forge.auth.v1.AuthService/Refresh",
    }


@pytest.mark.parametrize(
    "rpc",
    [
        "/forge.analytics.v1.AnalyticsService/ClearAllData",
        "/forge.auth.v1.AuthService/ListUsers",
        "/forge.auth.v1.AuthService/UpdateUser",
        "/forge.models.v1.ModelsService/PullModel",
        "/forge.models.v1.ModelsService/DeleteModel",
        "/forge.routing.v1.RoutingService/CreateRoutingRule",
        "/forge.routing.v1.RoutingService/UpdateProviderKey",
        "/forge.routing.v1.RoutingService/ReloadConfig",
        "/forge.routing.v1.RoutingService/GetConfig",
        "/forge.routing.v1.RoutingService/ResetCircuitBreaker",
    ],
)
def test_server_wide_changes_are_admin_only(rpc: str) -> None:
    assert ACCESS[rpc].level is Level.ADMIN


def _code(who: Principal, rpc: str) -> str:
    try:
        authorize(who, ACCESS[rpc], rpc)
    except ForgeError as err:
        return err.reason
    return "OK"


def test_authorize_by_level_role_and_scope() -> None:
    chat, clear = "/forge.chat.v1.ChatService/CreateChatCompletion", "/forge.analytics.v1.AnalyticsService/ClearLogs"
    health = "/forge.routing.v1.RoutingService/GetHealth"
    assert [_code(ANONYMOUS, r) for r in (health, chat, clear)] == ["OK", "CREDENTIALS_MISSING", "CREDENTIALS_MISSING"]
    assert [_code(USER, r) for r in (health, chat, clear)] == ["OK", "OK", "ADMIN_ONLY"]
    assert [_code(ADMIN, r) for r in (health, chat, clear)] == ["OK", "OK", "OK"]
    assert _code(LOCAL, clear) == "OK"
    rag_key = Principal(user_id="usr_1", role=Role.USER, api_key_id="key_1", scopes=frozenset({"rag:write"}))
    assert _code(rag_key, "/forge.rag.v1.RagService/ListNamespaces") == "OK"  # write includes read
    assert _code(rag_key, "/forge.rag.v1.RagService/IndexDocuments") == "OK"
    assert _code(rag_key, chat) == "SCOPE_MISSING"
    assert _code(rag_key, "/forge.auth.v1.AuthService/GetCurrentUser") == "OK"  # any key
    assert _code(rag_key, "/forge.auth.v1.AuthService/CreateApiKey") == "SCOPE_MISSING"  # needs "*"
    full_key = Principal(user_id="usr_1", role=Role.USER, api_key_id="key_2", scopes=frozenset({"*"}))
    assert _code(full_key, "/forge.auth.v1.AuthService/CreateApiKey") == "OK"
    admin_chat_key = Principal(user_id="usr_2", role=Role.ADMIN, api_key_id="key_3", scopes=frozenset({"chat"}))
    assert _code(admin_chat_key, clear) == "SCOPE_MISSING"  # an admin's narrowed key is narrowed


def test_allowed_models_take_globs() -> None:
    who = Principal(user_id="u", role=Role.USER, allowed_models=frozenset({"gpt-4o*", "llama3.2"}))
    assert who.may_use_model("gpt-4o-mini") and who.may_use_model("llama3.2")
    assert not who.may_use_model("llama3.2:70b") and not who.may_use_model("gpt-5")
    assert USER.may_use_model("anything")


def test_model_fields_are_found_on_the_request_and_its_messages() -> None:
    single = chat_pb2.CreateChatCompletionRequest(chat=chat_pb2.ChatRequest(model="a"))
    assert list(model_fields(single)) == [("chat.model", "a")]
    batch = chat_pb2.BatchCreateChatCompletionsRequest(
        requests=[chat_pb2.ChatRequest(model="a"), chat_pb2.ChatRequest()]
    )
    assert list(model_fields(batch)) == [("requests[0].model", "a"), ("requests[1].model", "")]
    assert list(model_fields(models_pb2.PullModelRequest(model="llama3.2"))) == [("model", "llama3.2")]
    assert list(model_fields(rag_pb2.GetNamespaceRequest(name="x"))) == []
    assert list(model_fields(chat_pb2.CreateChatCompletionRequest())) == []  # no chat message set


@pytest.mark.parametrize(
    ("name", "ok"),
    [
        ("", True),
        ("gpt-4o-mini", True),
        ("ollama/llama3.2:3b", True),
        ("hf.co/bartowski/Llama-3.2-1B-Instruct-GGUF:Q4_K_M", True),
        ("claude@20240229", True),
        ("@cf/meta/llama-3-8b", True),
        ("fake/gpt-fake@tokens=3&ttft_ms=200", True),
        ("x" * 256, True),
        ("x" * 257, False),
        ("gpt 4", False),
        ("gpt-4\n", False),
        ('gpt"4', False),
        ("<script>", False),
        ("/etc/passwd", False),
        ("ollama/../../api/delete", False),
    ],
)
def test_model_name_rule(name: str, ok: bool) -> None:
    assert (model_name_violation(name) is None) is ok


def test_tokens_round_trip_and_keep_their_type() -> None:
    codec = TokenCodec("forge", "forge", 900, 3600)
    codec.set_secret(SECRET)
    issued = codec.issue("access", "usr_1", "ses_1")
    claims = codec.decode(issued.token, "access")
    assert (claims.user_id, claims.session_id) == ("usr_1", "ses_1") and issued.expires_in == 900
    decoded = jwt.decode(issued.token, SECRET, algorithms=["HS256"], audience="forge")
    assert set(decoded) == {"iss", "aud", "sub", "sid", "iat", "exp", "jti", "typ"}
    with pytest.raises(ForgeError) as info:
        codec.decode(issued.token, "refresh")
    assert info.value.code is ErrorCode.UNAUTHENTICATED and info.value.reason == "TOKEN_WRONG_TYPE"
    other = TokenCodec("forge", "someone-else", 900, 3600)
    other.set_secret(SECRET)
    with pytest.raises(ForgeError) as info:
        other.decode(issued.token, "access")
    assert info.value.reason == "TOKEN_INVALID_AUDIENCE"


def test_a_token_without_a_type_is_refused() -> None:
    codec = TokenCodec("forge", "forge", 900, 3600)
    codec.set_secret(SECRET)
    now = int(time.time())
    claims = {"iss": "forge", "aud": "forge", "sub": "u", "sid": "s", "jti": "j", "iat": now, "exp": now + 60}
    with pytest.raises(ForgeError) as info:
        codec.decode(jwt.encode(claims, SECRET, algorithm="HS256"), "access")
    assert info.value.reason == "TOKEN_INVALID" and "typ" in info.value.message


def test_api_keys_are_random_and_hashed() -> None:
    a, b = new_api_key(), new_api_key()
    assert a.secret != b.secret and a.secret.startswith("fk_") and len(a.secret) >= 40
    assert a.digest == secret_digest(a.secret) and a.secret not in a.digest and a.prefix == a.secret[:10]


def test_auth_section_from_file_and_environment() -> None:
    assert not parse_auth({}, {}).enabled
    cfg = parse_auth(
        {"enabled": False, "cors_origins": ["https://a.example/"], "access_ttl_s": 60},
        {
            "FORGE_AUTH_ENABLED": "true",
            "FORGE_JWT_SECRET": SECRET,
            "FORGE_ADMIN_USERNAME": "root",
            "FORGE_ADMIN_PASSWORD": "long enough",
            "FORGE_ALLOW_REGISTRATION": "0",
        },
    )
    assert cfg.enabled and cfg.jwt_secret == SECRET and cfg.access_ttl_s == 60 and not cfg.allow_registration
    assert (cfg.admin_username, cfg.admin_password) == ("root", "long enough")
    assert cfg.cors_origins == ("https://a.example",)
    assert SECRET not in repr(cfg) and "long enough" not in repr(cfg)  # secrets stay out of logs
    assert parse_auth({}, {"FORGE_CORS_ORIGINS": "https://a.example, https://b.example"}).cors_origins == (
        "https://a.example",
        "https://b.example",
    )


@pytest.mark.parametrize(
    ("section", "env", "message"),
    [
        ({}, {"FORGE_JWT_SECRET": "short"}, "at least 32"),
        ({}, {"FORGE_AUTH_ENABLED": "maybe"}, "true or false"),
        ({}, {"FORGE_ADMIN_USERNAME": "root"}, "together"),
        ({}, {"FORGE_ADMIN_USERNAME": "root", "FORGE_ADMIN_PASSWORD": "short"}, "at least 8"),
        ({"access_ttl_s": 0}, {}, "positive"),
        ({"cors_origins": ["example.com"]}, {}, "not an origin"),
    ],
)
def test_bad_auth_settings_are_named(section: dict[str, object], env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_auth(section, env)


async def test_the_signing_key_file_is_private_and_reused(tmp_path: Path) -> None:
    path = tmp_path / "data" / "jwt_secret"
    first = await load_or_create_secret(path)
    assert len(first) >= 32 and stat.S_IMODE(path.stat().st_mode) == 0o600
    assert await load_or_create_secret(path) == first
    path.chmod(0o644)  # loosened by a copy or a restore
    assert await load_or_create_secret(path) == first
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in path.parent.iterdir()] == ["jwt_secret"]  # no temporary file left behind
