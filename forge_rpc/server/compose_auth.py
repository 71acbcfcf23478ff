"""AuthService and the authentication/access policy (issue #5).

AuthService always answers (accounts can be prepared before auth is turned on). The auth policy is installed only
with `auth.enabled`; without it every call runs as the local operator. The model-name check runs either way.
"""

from __future__ import annotations

import logging
import secrets
from pathlib import Path

from ..adapters.auth import CredentialCache, CredentialResolver, PasswordVault, TokenCodec, load_or_create_secret
from ..adapters.store.api_key_store import ApiKeyStore
from ..adapters.store.auth_store import AuthStore
from ..domain import ForgeError
from ..services.auth import AuthServicer, AuthSettings
from .auth_policy import AuthPolicy
from .component import Component, Core, Resources
from .config import AuthConfig
from .model_policy import ModelNamePolicy
from .policy import Policy

__all__ = ["auth_component"]

log = logging.getLogger("forge.auth")

SECRET_FILE = "jwt_secret"


async def _signing_key(cfg: AuthConfig, data_dir: Path) -> str:
    if cfg.jwt_secret is not None:
        return cfg.jwt_secret
    if not cfg.enabled:
        # Tokens are not checked with auth off: no reason to leave a key file behind.
        return secrets.token_urlsafe(48)
    return await load_or_create_secret(data_dir / SECRET_FILE)


async def _bootstrap_admin(cfg: AuthConfig, store: AuthStore, vault: PasswordVault) -> None:
    name, password = cfg.admin_username, cfg.admin_password
    if name is None or password is None or await store.user_exists(name):
        return
    email = name if "@" in name else None
    try:
        await store.create_user(name, email, "Administrator", await vault.hash(password), "admin")
    except ForgeError as err:
        if err.reason != "USER_EXISTS":
            raise
        return  # another replica starting at the same time created it
    log.info("created the bootstrap admin %r", name)


def auth_component(core: Core) -> Component:
    cfg = core.config.auth
    store, keys = AuthStore(), ApiKeyStore()  # their pool is bound in start()
    vault = PasswordVault()
    codec = TokenCodec(cfg.issuer, cfg.audience, cfg.access_ttl_s, cfg.refresh_ttl_s)
    cache = CredentialCache(store, keys, cfg.key_cache_s)
    settings = AuthSettings(allow_registration=cfg.allow_registration)
    servicer = AuthServicer(store, keys, vault, codec, cache, settings)
    policies: list[Policy] = []
    if cfg.enabled:
        policies.append(
            AuthPolicy(CredentialResolver(codec, cache), default_model=lambda: core.directory.current().default_model)
        )
    policies.append(ModelNamePolicy())

    async def start(resources: Resources) -> None:
        store.bind(resources.pool)
        keys.bind(resources.pool)
        codec.set_secret(await _signing_key(cfg, core.config.data_dir))
        if cfg.enabled and cfg.jwt_secret is None and resources.redis is not None:
            log.warning("auth is on with several replicas (Redis) but no FORGE_JWT_SECRET: each replica signs with "
                        "its own key unless they share the data directory")  # fmt: skip
        await store.purge_expired()
        await _bootstrap_admin(cfg, store, vault)
        cache.start()

    async def stop() -> None:
        await cache.stop()

    return Component(
        "auth", servicers={"forge.auth.v1.AuthService": [servicer]}, policies=policies, start=start, stop=stop
    )
