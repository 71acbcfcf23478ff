"""AuthService's proto ⇄ store conversions and input checks: users, limits, API keys."""

from __future__ import annotations

import re
from typing import Any

from forge.auth.v1 import auth_pb2 as pb

from ..adapters.store.api_key_store import ApiKeyRow
from ..adapters.store.auth_store import UserRow
from ..domain import FieldViolation
from ..domain.identity import ALL_SCOPES
from ..domain.validation import MAX_MODEL_NAME
from .timestamps import timestamp

__all__ = [
    "LIMIT_FIELDS",
    "MAX_PASSWORD",
    "ROLES",
    "check_allowed_models",
    "check_limits",
    "check_registration",
    "check_scopes",
    "key_message",
    "limits_dict",
    "limits_message",
    "local_user",
    "user_message",
]

ROLES = ("admin", "user")
LIMIT_FIELDS = (
    "requests_per_minute",
    "tokens_per_minute",
    "max_concurrent_streams",
    "budget_usd",
    "token_quota",
    "budget_period",
)
PERIODS = ("day", "month", "total")
MIN_PASSWORD, MAX_PASSWORD = 8, 1024
_USERNAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@+-]{2,253}")
_EMAIL = re.compile(r"[^@\s]{1,64}@[^@\s]+\.[^@\s]+")
# Model patterns as allowed_models takes them: a model name, possibly with fnmatch wildcards.
_MODEL_PATTERN = re.compile(r"[A-Za-z0-9._:/@+=&%~,*?\[\]-]+")


def limits_message(limits: dict[str, Any]) -> pb.Limits:
    return pb.Limits(**{k: v for k, v in limits.items() if k in LIMIT_FIELDS and v is not None})


def limits_dict(message: pb.Limits) -> dict[str, Any]:
    """The fields set in `message` (unset ones inherit, so they are not stored)."""
    out: dict[str, Any] = {k: getattr(message, k) for k in LIMIT_FIELDS[:-1] if message.HasField(k)}  # type: ignore[arg-type]
    if message.budget_period:
        out["budget_period"] = message.budget_period
    return out


def user_message(row: UserRow) -> pb.User:
    user = pb.User(
        id=row.id,
        username=row.username,
        email=row.email or "",
        full_name=row.full_name,
        role=row.role,
        disabled=row.disabled,
        limits=limits_message(row.limits),
        created_at=timestamp(row.created_at),
    )
    if row.last_login_at is not None:
        user.last_login_at.CopyFrom(timestamp(row.last_login_at))
    return user


def local_user() -> pb.User:
    """The caller when auth is off: the local operator, an admin without an account."""
    return pb.User(id="local", username="local", full_name="Local operator (auth is off)", role="admin")


def key_message(row: ApiKeyRow) -> pb.ApiKey:
    key = pb.ApiKey(
        id=row.id,
        name=row.name,
        prefix=f"{row.prefix}…",
        scopes=list(row.scopes),
        allowed_models=list(row.allowed_models),
        limits=limits_message(row.limits),
        user_id=row.user_id,
        created_at=timestamp(row.created_at),
        revoked=row.revoked_at is not None,
    )
    for name, value in (("expires_at", row.expires_at), ("last_used_at", row.last_used_at)):
        if value is not None:
            getattr(key, name).CopyFrom(timestamp(value))
    if row.revoked_at is not None:
        key.revoked_at.CopyFrom(timestamp(row.revoked_at))
    return key


def check_registration(request: pb.RegisterRequest) -> list[FieldViolation]:
    bad: list[FieldViolation] = []
    if not request.username and not request.email:
        bad.append(FieldViolation("username", "a username or an email is required"))
    if request.username and not _USERNAME.fullmatch(request.username):
        bad.append(
            FieldViolation(
                "username", "3 to 254 characters: letters, digits and . _ @ + -, starting with one of the first two"
            )
        )
    if request.email and (len(request.email) > 254 or not _EMAIL.fullmatch(request.email)):
        bad.append(FieldViolation("email", "not an email address"))
    if not MIN_PASSWORD <= len(request.password) <= MAX_PASSWORD:
        bad.append(FieldViolation("password", f"{MIN_PASSWORD} to {MAX_PASSWORD} characters"))
    if len(request.full_name) > 200 or any(ord(c) < 32 for c in request.full_name):
        bad.append(FieldViolation("full_name", "at most 200 characters, no control characters"))
    return bad


def check_limits(message: pb.Limits, prefix: str) -> list[FieldViolation]:
    bad = [
        FieldViolation(f"{prefix}.{name}", "must not be negative")
        for name in LIMIT_FIELDS[:-1]
        if message.HasField(name) and getattr(message, name) < 0  # type: ignore[arg-type]
    ]
    if message.budget_period and message.budget_period not in PERIODS:
        bad.append(FieldViolation(f"{prefix}.budget_period", f"one of {', '.join(PERIODS)}"))
    return bad


def check_scopes(scopes: list[str], owner_is_admin: bool) -> list[FieldViolation]:
    bad = []
    for i, scope in enumerate(scopes):
        if scope not in ALL_SCOPES:
            bad.append(FieldViolation(f"scopes[{i}]", f"{scope!r} is not one of {', '.join(sorted(ALL_SCOPES))}"))
        elif scope == "admin" and not owner_is_admin:
            bad.append(FieldViolation(f"scopes[{i}]", "'admin' is only for an admin's keys"))
    return bad


def check_allowed_models(models: list[str]) -> list[FieldViolation]:
    if len(models) > 100:
        return [FieldViolation("allowed_models", "at most 100 entries")]
    return [
        FieldViolation(f"allowed_models[{i}]", f"a model name or glob of at most {MAX_MODEL_NAME} characters")
        for i, model in enumerate(models)
        if not model or len(model) > MAX_MODEL_NAME or not _MODEL_PATTERN.fullmatch(model)
    ]
