"""Who a /ws socket acts as: the credentials of its upgrade request, checked at connect and now and then after.

Browsers cannot set headers on a WebSocket, so besides `Authorization: Bearer …` and `X-Api-Key` the handshake
may carry the token as a subprotocol, `new WebSocket(url, ["forge", "bearer." + token])` (the server selects
"forge"; the token is never echoed), or as `?token=…` (which can end up in proxies' logs: the subprotocol is
preferred). The edge does not judge tokens itself — it has no keys and imports nothing of the core: it asks the
core, calling AuthService.GetCurrentUser with the socket's credentials through the invoker, so the core's auth
policy decides exactly as for any other call.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Final

from aiohttp import hdrs, web
from forge.auth.v1 import auth_pb2

from ..call_metadata import call_metadata
from ..invoke import InvokeError, Invoker

__all__ = ["BEARER_PREFIX", "SUBPROTOCOL", "Caller", "caller_of", "check_caller"]

SUBPROTOCOL: Final = "forge"
BEARER_PREFIX: Final = "bearer."
WHO_AM_I: Final = "/forge.auth.v1.AuthService/GetCurrentUser"
CHECK_TIMEOUT_S: Final = 10.0


@dataclass(frozen=True, slots=True)
class Caller:
    metadata: list[tuple[str, str]]
    """Call metadata for every stream the socket opens: the upgrade request's, with its credentials."""
    identity: bytes
    """32 bytes naming the credentials (SHA-256; zeros for none): upstream streams are shared only between
    sockets with the same credentials, so no caller reads a stream opened with another's rights."""


def _offered_token(request: web.Request) -> str | None:
    for header in request.headers.getall(hdrs.SEC_WEBSOCKET_PROTOCOL, ()):
        for offered in header.split(","):
            proto = offered.strip()
            if proto.startswith(BEARER_PREFIX) and len(proto) > len(BEARER_PREFIX):
                return proto[len(BEARER_PREFIX) :]
    token = request.query.get("token")
    return token or None


def caller_of(request: web.Request) -> Caller:
    metadata = call_metadata(request)
    sent = [v for k, v in metadata if k in ("authorization", "x-api-key")]
    if not sent and (token := _offered_token(request)) is not None:
        metadata.append(("authorization", f"Bearer {token}"))
        sent = [token]
    identity = hashlib.sha256("\n".join(sent).encode()).digest() if sent else bytes(32)
    return Caller(metadata, identity)


async def check_caller(invoker: Invoker, caller: Caller) -> InvokeError | None:
    """None when the core accepts the socket's credentials, else its refusal (UNAUTHENTICATED, PERMISSION_DENIED,
    or UNAVAILABLE when it cannot tell)."""
    try:
        await invoker.unary(WHO_AM_I, auth_pb2.GetCurrentUserRequest(), caller.metadata, CHECK_TIMEOUT_S)
    except InvokeError as err:
        return err
    return None
