"""Who is calling: the `Principal` the auth policy resolves for every call, and what it may see.

With auth off (the embedded default) every call runs as `LOCAL`, the single trusted operator of this machine.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

__all__ = ["ANONYMOUS", "LOCAL", "Principal", "Quota", "Role"]


class Role(enum.StrEnum):
    ADMIN = "admin"
    USER = "user"
    ANONYMOUS = "anonymous"


@dataclass(frozen=True, slots=True)
class Quota:
    """Per-key or per-user limits; None means the configured default applies."""

    requests_per_minute: int | None = None
    tokens_per_minute: int | None = None
    max_concurrent_streams: int | None = None
    budget_usd: float | None = None
    token_quota: int | None = None


@dataclass(frozen=True, slots=True)
class Principal:
    user_id: str | None
    """None for anonymous and local callers."""
    role: Role
    api_key_id: str | None = None
    """Set when an API key (not a session token) authenticated the call; its id, never its secret."""
    username: str | None = None
    scopes: frozenset[str] = field(default_factory=frozenset)
    """Empty means unrestricted."""
    allowed_models: frozenset[str] = field(default_factory=frozenset)
    """Empty means any model."""
    user_quota: Quota = field(default_factory=Quota)
    key_quota: Quota = field(default_factory=Quota)

    @property
    def is_admin(self) -> bool:
        return self.role is Role.ADMIN

    @property
    def authenticated(self) -> bool:
        return self.role is not Role.ANONYMOUS

    def owns(self, owner_id: str | None) -> bool:
        """May this caller see a resource owned by `owner_id`? Admins see everything."""
        return self.is_admin or (self.user_id is not None and owner_id == self.user_id)

    def may_use_model(self, model: str) -> bool:
        return not self.allowed_models or model in self.allowed_models


ANONYMOUS = Principal(user_id=None, role=Role.ANONYMOUS)
LOCAL = Principal(user_id=None, role=Role.ADMIN, username="local")
"""Every caller when auth is off: the operator of a single-user install."""
