"""Access and refresh tokens: JWTs signed with HS256 and nothing else.

Only HS256 is accepted (`algorithms=["HS256"]`), so `alg: none` and algorithm-confusion tokens fail before any
claim is read. Every token must carry `exp`, `iat`, `sub`, `aud`, `iss`, `jti`, `sid` (the session) and `typ`:
"access" for the bearer token, "refresh" for the one Refresh exchanges — a refresh token presented as a bearer
token is refused for its type, not accepted as a longer-lived access token.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from typing import Any, Literal

import jwt

from ...domain import ForgeError, Unauthenticated

__all__ = ["Claims", "IssuedToken", "TokenCodec", "TokenType"]

TokenType = Literal["access", "refresh"]
ALGORITHM = "HS256"
#: Replicas' clocks may differ by this much without rejecting each other's fresh tokens.
LEEWAY_S = 5
_REQUIRED = ["exp", "iat", "sub", "aud", "iss", "jti", "typ"]


@dataclass(frozen=True, slots=True)
class Claims:
    user_id: str
    session_id: str
    token_id: str
    expires_at: float


@dataclass(frozen=True, slots=True)
class IssuedToken:
    token: str
    expires_in: int
    """Seconds until it expires."""
    expires_at: float


def _refusal(exc: jwt.InvalidTokenError) -> ForgeError:
    # Most specific first: several of these are subclasses of one another.
    if isinstance(exc, jwt.ExpiredSignatureError):
        return Unauthenticated("the token has expired; log in or refresh", "TOKEN_EXPIRED")
    if isinstance(exc, jwt.InvalidAudienceError):
        return Unauthenticated("the token was not issued for this service", "TOKEN_INVALID_AUDIENCE")
    if isinstance(exc, jwt.InvalidIssuerError):
        return Unauthenticated("the token was not issued by this service", "TOKEN_INVALID_ISSUER")
    if isinstance(exc, jwt.InvalidAlgorithmError):
        return Unauthenticated("the token's algorithm is not allowed (HS256 only)", "TOKEN_ALGORITHM_NOT_ALLOWED")
    if isinstance(exc, jwt.InvalidSignatureError):
        return Unauthenticated("the token's signature is not valid", "TOKEN_INVALID_SIGNATURE")
    if isinstance(exc, jwt.MissingRequiredClaimError):
        return Unauthenticated(f"the token lacks the {exc.claim!r} claim", "TOKEN_INVALID")
    if isinstance(exc, jwt.ImmatureSignatureError):
        return Unauthenticated("the token is not valid yet", "TOKEN_INVALID")
    if isinstance(exc, jwt.DecodeError):
        return Unauthenticated("the token is not a well-formed JWT", "TOKEN_MALFORMED")
    return Unauthenticated("the token is not valid", "TOKEN_INVALID")


class TokenCodec:
    def __init__(self, issuer: str, audience: str, access_ttl_s: int, refresh_ttl_s: int) -> None:
        self._issuer = issuer
        self._audience = audience
        self._ttl: dict[TokenType, int] = {"access": access_ttl_s, "refresh": refresh_ttl_s}
        self._key: bytes | None = None

    def set_secret(self, secret: str) -> None:
        """The signing key; set once at start (it may come from a file written then)."""
        self._key = secret.encode()

    @property
    def ready(self) -> bool:
        return self._key is not None

    def _secret(self) -> bytes:
        if self._key is None:
            raise Unauthenticated("authentication is starting; retry in a moment", "AUTH_NOT_READY")
        return self._key

    def ttl(self, typ: TokenType) -> int:
        return self._ttl[typ]

    def issue(self, typ: TokenType, user_id: str, session_id: str) -> IssuedToken:
        now = int(time.time())
        ttl = self._ttl[typ]
        claims: dict[str, Any] = {
            "iss": self._issuer,
            "aud": self._audience,
            "sub": user_id,
            "sid": session_id,
            "iat": now,
            "exp": now + ttl,
            "jti": secrets.token_urlsafe(12),
            "typ": typ,
        }
        return IssuedToken(jwt.encode(claims, self._secret(), algorithm=ALGORITHM), ttl, float(now + ttl))

    def decode(self, token: str, typ: TokenType) -> Claims:
        """The token's claims, or UNAUTHENTICATED with a reason saying what is wrong with it."""
        try:
            claims = jwt.decode(
                token,
                self._secret(),
                algorithms=[ALGORITHM],
                audience=self._audience,
                issuer=self._issuer,
                leeway=LEEWAY_S,
                options={"require": _REQUIRED},
            )
        except jwt.InvalidTokenError as exc:
            raise _refusal(exc) from None
        if claims.get("typ") != typ:
            found = claims.get("typ")
            raise Unauthenticated(f"this is a {found!r} token; a {typ!r} token is needed here", "TOKEN_WRONG_TYPE")
        sub, sid, jti = claims.get("sub"), claims.get("sid"), claims.get("jti")
        if not (isinstance(sub, str) and sub and isinstance(sid, str) and sid and isinstance(jti, str)):
            raise Unauthenticated("the token's subject or session is missing", "TOKEN_INVALID")
        return Claims(sub, sid, jti, float(claims["exp"]))
