"""AuthService: accounts, login sessions with rotating refresh tokens, and API keys.

Who may call what is the access table's business (server/access.py, enforced by the auth policy); the checks
here keep each RPC safe on its own too: admin-only RPCs re-check the role, and keys are looked up only among the
caller's own (another user's key answers NOT_FOUND, as a key that does not exist would).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from forge.auth.v1 import auth_pb2 as pb

from ..adapters.auth import CredentialCache, PasswordVault, TokenCodec, new_api_key, secret_digest
from ..adapters.store.api_key_store import ALL_USERS, ApiKeyRow, ApiKeyStore, KeyWrite
from ..adapters.store.auth_store import AuthStore, RotationOutcome, UserRow, new_id
from ..domain import FailedPrecondition, FieldViolation, InvalidArgument, NotFound, PermissionDenied, Unauthenticated
from ..domain.identity import Principal
from .auth_convert import (
    LIMIT_FIELDS,
    MAX_PASSWORD,
    ROLES,
    check_allowed_models,
    check_limits,
    check_registration,
    check_scopes,
    key_message,
    limits_dict,
    local_user,
    user_message,
)
from .context import CallContext, principal
from .paging import next_page_token, page_offset, page_size

__all__ = ["AuthServicer", "AuthSettings"]

_ROTATION_REFUSALS = {
    RotationOutcome.UNKNOWN: ("the refresh token is not valid", "REFRESH_TOKEN_INVALID"),
    RotationOutcome.EXPIRED: ("the refresh token has expired; log in again", "REFRESH_TOKEN_EXPIRED"),
    RotationOutcome.REVOKED: ("this session has ended; log in again", "SESSION_REVOKED"),
    RotationOutcome.REUSED: (
        "this refresh token was already used, so it may have been stolen: the session is revoked; log in again",
        "REFRESH_TOKEN_REUSED",
    ),
}


@dataclass(frozen=True, slots=True)
class AuthSettings:
    allow_registration: bool = True


def _require_admin(who: Principal) -> None:
    if not who.is_admin:
        raise PermissionDenied("this needs the admin role", "ADMIN_ONLY")


class AuthServicer:
    def __init__(
        self,
        store: AuthStore,
        keys: ApiKeyStore,
        vault: PasswordVault,
        codec: TokenCodec,
        cache: CredentialCache,
        settings: AuthSettings | None = None,
    ) -> None:
        self._store = store
        self._keys = keys
        self._vault = vault
        self._codec = codec
        self._cache = cache
        self._settings = settings or AuthSettings()

    # --- accounts and sessions --------------------------------------------------------------------------------

    async def Register(self, request: pb.RegisterRequest, context: CallContext) -> pb.RegisterResponse:
        who = principal.get()
        if not self._settings.allow_registration and not who.is_admin:
            raise PermissionDenied("registration is closed; an admin creates accounts", "REGISTRATION_CLOSED")
        bad = check_registration(request)
        if bad:
            raise InvalidArgument(bad)
        hashed = await self._vault.hash(request.password)
        row = await self._store.create_user(
            request.username or request.email, request.email or None, request.full_name, hashed, None
        )
        return pb.RegisterResponse(
            message="User registered successfully", user_id=row.id, verification_required=False, user=user_message(row)
        )

    async def Login(self, request: pb.LoginRequest, context: CallContext) -> pb.Session:
        bad = [FieldViolation(f, "required") for f in ("username", "password") if not getattr(request, f)]
        if len(request.username) > 254 or len(request.password) > MAX_PASSWORD:
            bad.append(FieldViolation("username" if len(request.username) > 254 else "password", "too long"))
        if bad:
            raise InvalidArgument(bad)
        found = await self._store.login_lookup(request.username)
        stored = found[1] if found is not None else None
        # Checked even for an unknown user (against a decoy), so timing does not tell which usernames exist.
        if not await self._vault.verify(stored, request.password) or found is None:
            raise Unauthenticated("wrong username or password", "INVALID_CREDENTIALS")
        user, stored = found
        if user.disabled:
            raise PermissionDenied(f"user {user.username!r} is disabled", "USER_DISABLED")
        rehashed = await self._vault.hash(request.password) if self._vault.needs_rehash(stored) else None
        session = await self._start_session(user)
        await self._store.record_login(user.id, rehashed)
        return session

    async def _start_session(self, user: UserRow) -> pb.Session:
        session_id = new_id("ses")
        refresh = self._codec.issue("refresh", user.id, session_id)
        expires = datetime.fromtimestamp(refresh.expires_at, UTC)
        await self._store.start_session(user.id, session_id, secret_digest(refresh.token), expires)
        return self._session(user, session_id, refresh.token, refresh.expires_in)

    def _session(self, user: UserRow, session_id: str, refresh_token: str, refresh_expires_in: int) -> pb.Session:
        access = self._codec.issue("access", user.id, session_id)
        return pb.Session(
            access_token=access.token,
            token_type="bearer",
            expires_in=access.expires_in,
            refresh_token=refresh_token,
            refresh_expires_in=refresh_expires_in,
            user=user_message(user),
        )

    async def Refresh(self, request: pb.RefreshRequest, context: CallContext) -> pb.Session:
        if not request.refresh_token:
            raise InvalidArgument([FieldViolation("refresh_token", "required")])
        claims = self._codec.decode(request.refresh_token, "refresh")
        successor = self._codec.issue("refresh", claims.user_id, claims.session_id)
        rotation = await self._store.rotate(
            secret_digest(request.refresh_token),
            secret_digest(successor.token),
            datetime.fromtimestamp(successor.expires_at, UTC),
        )
        if rotation.outcome is not RotationOutcome.ROTATED:
            raise Unauthenticated(*_ROTATION_REFUSALS[rotation.outcome])
        user = await self._store.get_user(claims.user_id)
        if user is None or rotation.user_id != user.id:
            raise Unauthenticated(*_ROTATION_REFUSALS[RotationOutcome.UNKNOWN])
        if user.disabled:
            raise PermissionDenied(f"user {user.username!r} is disabled", "USER_DISABLED")
        return self._session(user, claims.session_id, successor.token, successor.expires_in)

    async def Logout(self, request: pb.LogoutRequest, context: CallContext) -> pb.LogoutResponse:
        who = principal.get()
        if who.user_id is None:
            return pb.LogoutResponse(success=True, message="auth is off: there is no session to end")
        if request.all_sessions:
            ended = await self._store.end_sessions(who.user_id, None)
        elif request.refresh_token:
            owner = await self._store.session_of(secret_digest(request.refresh_token))
            if owner is None or owner[1] != who.user_id:
                raise InvalidArgument([FieldViolation("refresh_token", "not a refresh token of yours")])
            ended = await self._store.end_sessions(who.user_id, owner[0])
        elif who.session_id is not None:
            ended = await self._store.end_sessions(who.user_id, who.session_id)
        else:
            raise InvalidArgument(
                [FieldViolation("refresh_token", "an API key has no session: pass refresh_token or all_sessions")]
            )
        return pb.LogoutResponse(success=True, message=f"ended {ended} session(s)", sessions_revoked=ended)

    async def GetCurrentUser(self, request: pb.GetCurrentUserRequest, context: CallContext) -> pb.User:
        who = principal.get()
        if who.user_id is None:
            if not who.authenticated:
                raise Unauthenticated("no credentials were sent", "CREDENTIALS_MISSING")
            return local_user()
        user = await self._store.get_user(who.user_id)
        if user is None:
            raise Unauthenticated("the caller's account no longer exists", "TOKEN_INVALID")
        return user_message(user)

    # --- user administration ----------------------------------------------------------------------------------

    async def ListUsers(self, request: pb.ListUsersRequest, context: CallContext) -> pb.ListUsersResponse:
        _require_admin(principal.get())
        if request.role and request.role not in ROLES:
            raise InvalidArgument([FieldViolation("role", f"one of {', '.join(ROLES)}")])
        size, offset = page_size(request.page_size), page_offset(request.page_token)
        rows, total = await self._store.list_users(request.role or None, size, offset)
        return pb.ListUsersResponse(
            users=[user_message(r) for r in rows], next_page_token=next_page_token(offset, len(rows), total)
        )

    async def UpdateUser(self, request: pb.UpdateUserRequest, context: CallContext) -> pb.User:
        _require_admin(principal.get())
        bad = [] if request.user_id else [FieldViolation("user_id", "required")]
        paths = list(request.update_mask.paths)
        known = {"role", "disabled", "limits", *(f"limits.{f}" for f in LIMIT_FIELDS)}
        bad += [FieldViolation("update_mask", f"unknown field {p!r}") for p in paths if p not in known]
        if request.user.role and request.user.role not in ROLES:
            bad.append(FieldViolation("user.role", f"one of {', '.join(ROLES)}"))
        bad += check_limits(request.user.limits, "user.limits")
        if bad:
            raise InvalidArgument(bad)
        current = await self._store.get_user(request.user_id)
        if current is None:
            raise NotFound("user", request.user_id)
        role, disabled, limits = self._changes(request, paths, current)
        if "role" in paths and not role:
            raise InvalidArgument([FieldViolation("user.role", f"one of {', '.join(ROLES)}")])
        row = await self._store.update_user(request.user_id, role, disabled, limits)
        if row is None:
            raise NotFound("user", request.user_id)
        self._cache.forget_user(row.id)
        return user_message(row)

    @staticmethod
    def _changes(
        request: pb.UpdateUserRequest, paths: list[str], current: UserRow
    ) -> tuple[str | None, bool | None, dict[str, object] | None]:
        """(role, disabled, limits) to write, None where unchanged. Without a mask: the role when given, `disabled`
        when true (proto3 cannot tell an unset bool from false, so re-enabling needs `update_mask=disabled`),
        and the limits fields that are set, merged into the stored ones."""
        user, given = request.user, limits_dict(request.user.limits)
        if not paths:
            merged = {**current.limits, **given} if request.user.HasField("limits") else None
            return user.role or None, True if user.disabled else None, merged
        limits: dict[str, object] | None = None
        if "limits" in paths:
            limits = given
        elif sub := [p.removeprefix("limits.") for p in paths if p.startswith("limits.")]:
            limits = {k: v for k, v in current.limits.items() if k not in sub}
            limits.update({k: v for k, v in given.items() if k in sub})
        return (user.role if "role" in paths else None), (user.disabled if "disabled" in paths else None), limits

    # --- API keys ---------------------------------------------------------------------------------------------

    async def CreateApiKey(self, request: pb.CreateApiKeyRequest, context: CallContext) -> pb.CreateApiKeyResponse:
        who = principal.get()
        if not who.unrestricted:
            # A key limited to some scopes or models must not mint one without those limits.
            raise PermissionDenied("a restricted API key cannot create API keys", "KEY_RESTRICTED")
        owner_id = request.user_id or who.user_id
        if owner_id is None:
            raise FailedPrecondition("the local operator has no account: name the key's user_id", "NO_ACCOUNT")
        if owner_id != who.user_id:
            _require_admin(who)
        owner = await self._store.get_user(owner_id)
        if owner is None:
            raise NotFound("user", owner_id)
        scopes = list(request.scopes) or ["*"]
        bad = [] if 0 < len(request.name) <= 100 else [FieldViolation("name", "1 to 100 characters")]
        bad += check_scopes(scopes, owner.role == "admin")
        bad += check_allowed_models(list(request.allowed_models))
        bad += check_limits(request.limits, "limits")
        expires = request.expires_at.ToDatetime(UTC) if request.HasField("expires_at") else None
        if expires is not None and expires <= datetime.now(UTC):
            bad.append(FieldViolation("expires_at", "must be in the future"))
        if bad:
            raise InvalidArgument(bad)
        new = new_api_key()
        row = await self._keys.create_key(
            KeyWrite(
                owner.id,
                request.name,
                new.prefix,
                new.digest,
                scopes,
                list(request.allowed_models),
                limits_dict(request.limits),
                expires,
            )
        )
        return pb.CreateApiKeyResponse(api_key=key_message(row), secret=new.secret)

    async def _own_key(self, key_id: str) -> ApiKeyRow:
        """The key, if the caller may see it; another user's key is NOT_FOUND, as a key that does not exist."""
        if not key_id:
            raise InvalidArgument([FieldViolation("key_id", "required")])
        row = await self._keys.get_key(key_id)
        if row is None or not principal.get().owns(row.user_id):
            raise NotFound("api_key", key_id)
        return row

    async def GetApiKey(self, request: pb.GetApiKeyRequest, context: CallContext) -> pb.ApiKey:
        return key_message(await self._own_key(request.key_id))

    async def ListApiKeys(self, request: pb.ListApiKeysRequest, context: CallContext) -> pb.ListApiKeysResponse:
        who = principal.get()
        whose = request.user_id or who.user_id or ALL_USERS  # the local operator (no account) sees everyone's
        if whose != who.user_id:
            _require_admin(who)
        size, offset = page_size(request.page_size), page_offset(request.page_token)
        rows, total = await self._keys.list_keys(whose, request.include_revoked, size, offset)
        return pb.ListApiKeysResponse(
            api_keys=[key_message(r) for r in rows], next_page_token=next_page_token(offset, len(rows), total)
        )

    async def RevokeApiKey(self, request: pb.RevokeApiKeyRequest, context: CallContext) -> pb.ApiKey:
        key_id = (await self._own_key(request.key_id)).id
        row = await self._keys.revoke_key(key_id)
        if row is None:
            raise NotFound("api_key", key_id)
        self._cache.forget_key(row.id)
        return key_message(row)
