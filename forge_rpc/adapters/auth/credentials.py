"""Who a bearer credential is: an access JWT or an API key turned into a `Principal`, with no database round
trip per request.

Users (by id) and API keys (by the SHA-256 of their secret) are cached in process for `ttl_s` (5 s by default).
The replica that revokes a key, disables a user or changes a role drops its entries at once; other replicas
notice within `ttl_s`, when their entry expires and they read the row again. Unknown keys are cached too
(as absent), so a client retrying a bad key costs one query per `ttl_s`, not one per request.

`last_used_at` is collected in memory and written for all used keys in one statement every few seconds, and
once more when forge stops.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar

from ...domain import PermissionDenied, Unauthenticated
from ...domain.identity import Principal, Quota, Role
from ..store.api_key_store import ApiKeyRow, ApiKeyStore
from ..store.auth_store import AuthStore, UserRow
from .api_keys import looks_like_api_key, secret_digest
from .tokens import TokenCodec

__all__ = ["CredentialCache", "CredentialResolver", "quota_from_limits"]

log = logging.getLogger("forge.auth")

K = TypeVar("K")
V = TypeVar("V")

_QUOTA_FIELDS = ("requests_per_minute", "tokens_per_minute", "max_concurrent_streams", "budget_usd", "token_quota")


def quota_from_limits(limits: dict[str, Any]) -> Quota:
    """Stored limits (auth.v1.Limits as JSON; absent keys inherit) as the domain's Quota."""
    values: dict[str, Any] = {k: limits[k] for k in _QUOTA_FIELDS if limits.get(k) is not None}
    period = limits.get("budget_period")
    return Quota(**values, budget_period=str(period) if period else None)


class _TtlCache(Generic[K, V]):
    """Entries live `ttl_s`; at most `max_entries` (oldest dropped first)."""

    def __init__(self, ttl_s: float, max_entries: int, load: Callable[[K], Awaitable[V]]) -> None:
        self._ttl = ttl_s
        self._max = max_entries
        self._load = load
        self._entries: dict[K, tuple[float, V]] = {}
        # Bumped by every forget(): a load that began before it must not put back what was just dropped.
        self._epoch = 0

    async def get(self, key: K) -> V:
        entry = self._entries.get(key)
        now = time.monotonic()
        if entry is not None and entry[0] > now:
            return entry[1]
        epoch = self._epoch
        value = await self._load(key)
        if self._ttl > 0 and epoch == self._epoch:
            self._entries.pop(key, None)
            self._entries[key] = (now + self._ttl, value)
            while len(self._entries) > self._max:
                del self._entries[next(iter(self._entries))]
        return value

    def forget(self, match: Callable[[K, V], bool]) -> None:
        self._epoch += 1
        for key in [k for k, (_, v) in self._entries.items() if match(k, v)]:
            del self._entries[key]


class CredentialCache:
    def __init__(
        self, users: AuthStore, keys: ApiKeyStore, ttl_s: float = 5.0, flush_s: float = 5.0, max_entries: int = 10_000
    ) -> None:
        self._store = keys
        self._users: _TtlCache[str, UserRow | None] = _TtlCache(ttl_s, max_entries, users.get_user)
        self._keys: _TtlCache[str, ApiKeyRow | None] = _TtlCache(ttl_s, max_entries, keys.key_by_digest)
        self._flush_s = flush_s
        self._used: dict[str, datetime] = {}
        self._flusher: asyncio.Task[None] | None = None

    async def user(self, user_id: str) -> UserRow | None:
        return await self._users.get(user_id)

    async def key(self, digest: str) -> ApiKeyRow | None:
        return await self._keys.get(digest)

    def forget_user(self, user_id: str) -> None:
        self._users.forget(lambda k, _: k == user_id)

    def forget_key(self, key_id: str) -> None:
        self._keys.forget(lambda _, row: row is not None and row.id == key_id)

    def mark_used(self, key_id: str) -> None:
        self._used[key_id] = datetime.now(UTC)

    def start(self) -> None:
        self._flusher = asyncio.create_task(self._flush_loop(), name="auth-key-last-used")

    async def stop(self) -> None:
        if self._flusher is not None:
            self._flusher.cancel()
            await asyncio.wait({self._flusher})
            self._flusher = None
        await self.flush()

    async def flush(self) -> None:
        used, self._used = self._used, {}
        try:
            await self._store.touch_keys(used)
        except Exception:
            log.warning("could not record API key use; retrying with the next batch", exc_info=True)
            for key_id, at in used.items():
                self._used.setdefault(key_id, at)

    async def _flush_loop(self) -> None:
        while True:
            await asyncio.sleep(self._flush_s)
            await self.flush()


class CredentialResolver:
    def __init__(self, codec: TokenCodec, cache: CredentialCache) -> None:
        self._codec = codec
        self._cache = cache

    async def resolve(self, credential: str) -> Principal:
        """The caller a bearer credential stands for. UNAUTHENTICATED for credentials forge does not accept,
        PERMISSION_DENIED for a disabled user's."""
        if looks_like_api_key(credential):
            return await self._from_key(credential)
        claims = self._codec.decode(credential, "access")
        user = await self._user(claims.user_id, "the token's user does not exist", "TOKEN_INVALID")
        return Principal(
            user_id=user.id,
            role=Role(user.role),
            username=user.username,
            user_quota=quota_from_limits(user.limits),
            session_id=claims.session_id,
        )

    async def _user(self, user_id: str, missing: str, reason: str) -> UserRow:
        user = await self._cache.user(user_id)
        if user is None:
            raise Unauthenticated(missing, reason)
        if user.disabled:
            raise PermissionDenied(f"user {user.username!r} is disabled", "USER_DISABLED")
        return user

    async def _from_key(self, secret: str) -> Principal:
        key = await self._cache.key(secret_digest(secret))
        if key is None:
            raise Unauthenticated("the API key is not valid", "API_KEY_INVALID")
        if key.revoked_at is not None:
            raise Unauthenticated(f"API key {key.prefix}… was revoked", "API_KEY_REVOKED")
        if key.expires_at is not None and key.expires_at <= datetime.now(UTC):
            raise Unauthenticated(f"API key {key.prefix}… has expired", "API_KEY_EXPIRED")
        user = await self._user(key.user_id, "the API key's user does not exist", "API_KEY_INVALID")
        self._cache.mark_used(key.id)
        return Principal(
            user_id=user.id,
            role=Role(user.role),
            api_key_id=key.id,
            username=user.username,
            scopes=frozenset(key.scopes),
            allowed_models=frozenset(key.allowed_models),
            user_quota=quota_from_limits(user.limits),
            key_quota=quota_from_limits(key.limits),
        )
