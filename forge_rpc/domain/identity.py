"""Who is calling: the `Principal` the auth policy resolves for every call, and what it may see.

With auth off (the embedded default) every call runs as `LOCAL`, the single trusted operator of this machine.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from fnmatch import fnmatchcase

__all__ = ["ALL_SCOPES", "ANONYMOUS", "LOCAL", "Principal", "Quota", "Role", "expand_scopes"]


class Role(enum.StrEnum):
    ADMIN = "admin"
    USER = "user"
    ANONYMOUS = "anonymous"


#: What an API key may be limited to (auth.proto `ApiKey.scopes`). "*" is everything its user may do; a
#: ":write" scope includes reading the same area.
ALL_SCOPES = frozenset({"*", "chat", "models", "models:write", "rag", "rag:write", "training", "analytics", "admin"})


def expand_scopes(scopes: frozenset[str]) -> frozenset[str]:
    """The scopes a key holds once each ":write" scope grants its read scope too."""
    return scopes | {s.removesuffix(":write") for s in scopes if s.endswith(":write")}


@dataclass(frozen=True, slots=True)
class Quota:
    """Per-key or per-user limits; None means the configured default applies."""

    requests_per_minute: int | None = None
    tokens_per_minute: int | None = None
    max_concurrent_streams: int | None = None
    budget_usd: float | None = None
    token_quota: int | None = None
    budget_period: str | None = None
    """"day", "month" or "total"; None means the default ("month")."""


@dataclass(frozen=True, slots=True)
class Principal:
    user_id: str | None
    """None for anonymous and local callers."""
    role: Role
    api_key_id: str | None = None
    """Set when an API key (not a session token) authenticated the call; its id, never its secret."""
    username: str | None = None
    scopes: frozenset[str] = field(default_factory=frozenset)
    """An API key's scopes; empty (or containing "*") means unrestricted."""
    allowed_models: frozenset[str] = field(default_factory=frozenset)
    """Model names or globs ("gpt-4o*"); empty means any model."""
    user_quota: Quota = field(default_factory=Quota)
    key_quota: Quota = field(default_factory=Quota)
    session_id: str | None = None
    """The login session (refresh-token family) an access token belongs to; None for API keys."""

    @property
    def is_admin(self) -> bool:
        return self.role is Role.ADMIN

    @property
    def authenticated(self) -> bool:
        return self.role is not Role.ANONYMOUS

    @property
    def unrestricted(self) -> bool:
        """Acts with all of its user's rights: a session, or an API key without scope or model limits."""
        return self.has_scope("*") and not self.allowed_models

    def owns(self, owner_id: str | None) -> bool:
        """May this caller see a resource owned by `owner_id`? Admins see everything."""
        return self.is_admin or (self.user_id is not None and owner_id == self.user_id)

    def has_scope(self, scope: str) -> bool:
        """Does the credential carry `scope`? Sessions and unscoped keys carry every scope."""
        return not self.scopes or "*" in self.scopes or scope in expand_scopes(self.scopes)

    def may_use_model(self, model: str) -> bool:
        return not self.allowed_models or any(fnmatchcase(model, pattern) for pattern in self.allowed_models)


ANONYMOUS = Principal(user_id=None, role=Role.ANONYMOUS)
LOCAL = Principal(user_id=None, role=Role.ADMIN, username="local")
"""Every caller when auth is off: the operator of a single-user install."""
