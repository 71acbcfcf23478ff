"""Authentication's I/O and crypto: argon2id password hashing, HS256 JWTs, API key secrets, the signing key
file, and the cached resolution of a bearer credential into a `Principal`."""

from .api_keys import KEY_PREFIX, NewKey, looks_like_api_key, new_api_key, secret_digest
from .credentials import CredentialCache, CredentialResolver, quota_from_limits
from .passwords import PasswordVault
from .secret_file import load_or_create_secret
from .tokens import Claims, IssuedToken, TokenCodec, TokenType

__all__ = [
    "KEY_PREFIX",
    "Claims",
    "CredentialCache",
    "CredentialResolver",
    "IssuedToken",
    "NewKey",
    "PasswordVault",
    "TokenCodec",
    "TokenType",
    "load_or_create_secret",
    "looks_like_api_key",
    "new_api_key",
    "quota_from_limits",
    "secret_digest",
]
