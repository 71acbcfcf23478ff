"""API key secrets: `fk_` + 256 random bits (base64url). Stored as SHA-256 only: a secret that cannot be
guessed needs no slow KDF, and a fast hash keeps the per-request lookup (and its cache key) cheap."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass

__all__ = ["KEY_PREFIX", "NewKey", "looks_like_api_key", "new_api_key", "secret_digest"]

KEY_PREFIX = "fk_"
SHOWN_CHARS = 10
"""How much of the secret the key's description shows (`fk_` and 7 random characters)."""


@dataclass(frozen=True, slots=True)
class NewKey:
    secret: str
    """Shown to its owner once, in CreateApiKey's answer; never stored."""
    digest: str
    prefix: str


def secret_digest(secret: str) -> str:
    """Hex SHA-256: what the database keeps for API keys and refresh tokens."""
    return hashlib.sha256(secret.encode()).hexdigest()


def new_api_key() -> NewKey:
    secret = KEY_PREFIX + secrets.token_urlsafe(32)
    return NewKey(secret, secret_digest(secret), secret[:SHOWN_CHARS])


def looks_like_api_key(credential: str) -> bool:
    return credential.startswith(KEY_PREFIX)
