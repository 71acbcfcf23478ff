"""The `auth:` section of the config file and its environment twins.

```yaml
auth:
  enabled: true                 # FORGE_AUTH_ENABLED
  jwt_secret: "…"               # FORGE_JWT_SECRET (else generated once into data_dir/jwt_secret, mode 0600)
  issuer: forge                 # FORGE_JWT_ISSUER
  audience: forge               # FORGE_JWT_AUDIENCE
  access_ttl_s: 900             # FORGE_ACCESS_TOKEN_TTL_S
  refresh_ttl_s: 2592000        # FORGE_REFRESH_TOKEN_TTL_S
  admin_username: admin         # FORGE_ADMIN_USERNAME  } the bootstrap admin, created at start if absent
  admin_password: "…"           # FORGE_ADMIN_PASSWORD  }
  allow_registration: true      # FORGE_ALLOW_REGISTRATION
  cors_origins: [https://app.example.com]   # FORGE_CORS_ORIGINS (comma-separated)
```
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .errors import ConfigError

__all__ = ["MIN_SECRET_CHARS", "AuthConfig", "parse_auth"]

MIN_SECRET_CHARS = 32
"""HS256 keys shorter than the hash (32 bytes) are brute-forceable offline from any one token (RFC 7518 §3.2)."""


@dataclass(frozen=True, slots=True)
class AuthConfig:
    enabled: bool = False
    """Enforce authentication (`FORGE_AUTH_ENABLED`). Off, the embedded default, every call acts as the local
    operator (an admin) and the auth policy is not installed; AuthService still answers."""
    jwt_secret: str | None = field(default=None, repr=False)
    """HS256 signing key (`FORGE_JWT_SECRET`, at least 32 characters). Unset with auth on: generated once and kept
    in `data_dir/jwt_secret` (mode 0600). Replicas must share it: set it whenever there is more than one."""
    issuer: str = "forge"
    """The `iss` claim forge signs and requires."""
    audience: str = "forge"
    """The `aud` claim forge signs and requires."""
    access_ttl_s: int = 15 * 60
    """Lifetime of an access token. Revoking a session stops its refresh token at once; its access tokens run
    out within this."""
    refresh_ttl_s: int = 30 * 24 * 3600
    """Lifetime of a refresh token (each Refresh issues a new one)."""
    admin_username: str | None = None
    """Bootstrap admin (`FORGE_ADMIN_USERNAME`), created at start when no user has that name."""
    admin_password: str | None = field(default=None, repr=False)
    """The bootstrap admin's password (`FORGE_ADMIN_PASSWORD`); only used when creating it."""
    allow_registration: bool = True
    """Anyone may Register (`FORGE_ALLOW_REGISTRATION`); off, only an admin can create accounts."""
    cors_origins: tuple[str, ...] = ()
    """Browser origins the edge allows cross-origin calls from (`FORGE_CORS_ORIGINS`); "*" allows any. Empty (the
    default) allows none: with auth off every caller is the all-powerful local operator, and an open CORS policy
    would hand that to any web page the operator visits."""
    key_cache_s: float = 5.0
    """How long a replica trusts what it read about an API key or a user (revocation, disabling, role and limit
    changes reach the other replicas within this; the replica that made the change sees it at once)."""


def _bool(name: str, raw: Any) -> bool:
    if isinstance(raw, bool):
        return raw
    text = str(raw).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off", ""):
        return False
    raise ConfigError(f"{name} must be true or false, got {raw!r}")


def _positive(name: str, raw: Any) -> int:
    try:
        value = int(raw)
    except (TypeError, ValueError):
        raise ConfigError(f"{name} must be a whole number of seconds, got {raw!r}") from None
    if value <= 0:
        raise ConfigError(f"{name} must be positive, got {value}")
    return value


def _origins(raw: Any) -> tuple[str, ...]:
    items = raw.split(",") if isinstance(raw, str) else raw
    if not isinstance(items, list | tuple):
        raise ConfigError("auth.cors_origins must be a list of origins or a comma-separated string")
    out = tuple(str(o).strip().rstrip("/") for o in items if str(o).strip())
    for origin in out:
        if origin != "*" and "://" not in origin:
            raise ConfigError(f"auth.cors_origins: {origin!r} is not an origin like https://app.example.com")
    return out


def parse_auth(section: Mapping[str, Any], env: Mapping[str, str]) -> AuthConfig:
    """`section` is the file's `auth:` mapping (empty when absent); environment variables win over it."""
    d = AuthConfig()

    def pick(key: str, var: str) -> Any:
        raw = env.get(var)
        return raw if raw not in (None, "") else section.get(key)

    enabled = pick("enabled", "FORGE_AUTH_ENABLED")
    secret = pick("jwt_secret", "FORGE_JWT_SECRET")
    if secret is not None and len(str(secret)) < MIN_SECRET_CHARS:
        raise ConfigError(f"FORGE_JWT_SECRET must be at least {MIN_SECRET_CHARS} characters")
    access = pick("access_ttl_s", "FORGE_ACCESS_TOKEN_TTL_S")
    refresh = pick("refresh_ttl_s", "FORGE_REFRESH_TOKEN_TTL_S")
    registration = pick("allow_registration", "FORGE_ALLOW_REGISTRATION")
    origins = pick("cors_origins", "FORGE_CORS_ORIGINS")
    cache = section.get("key_cache_s")
    admin, password = pick("admin_username", "FORGE_ADMIN_USERNAME"), pick("admin_password", "FORGE_ADMIN_PASSWORD")
    if (admin is None) != (password is None):
        raise ConfigError("FORGE_ADMIN_USERNAME and FORGE_ADMIN_PASSWORD must be set together")
    if password is not None and len(str(password)) < 8:
        raise ConfigError("FORGE_ADMIN_PASSWORD must be at least 8 characters")
    try:
        cache_s = d.key_cache_s if cache is None else float(cache)
    except (TypeError, ValueError):
        raise ConfigError(f"auth.key_cache_s must be a number of seconds, got {cache!r}") from None
    if cache_s < 0:
        raise ConfigError("auth.key_cache_s must not be negative")
    return AuthConfig(
        enabled=d.enabled if enabled is None else _bool("FORGE_AUTH_ENABLED", enabled),
        jwt_secret=None if secret is None else str(secret),
        issuer=str(pick("issuer", "FORGE_JWT_ISSUER") or d.issuer),
        audience=str(pick("audience", "FORGE_JWT_AUDIENCE") or d.audience),
        access_ttl_s=d.access_ttl_s if access is None else _positive("FORGE_ACCESS_TOKEN_TTL_S", access),
        refresh_ttl_s=d.refresh_ttl_s if refresh is None else _positive("FORGE_REFRESH_TOKEN_TTL_S", refresh),
        admin_username=None if admin is None else str(admin),
        admin_password=None if password is None else str(password),
        allow_registration=(
            d.allow_registration if registration is None else _bool("FORGE_ALLOW_REGISTRATION", registration)
        ),
        cors_origins=d.cors_origins if origins is None else _origins(origins),
        key_cache_s=cache_s,
    )
