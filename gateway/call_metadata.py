"""What an HTTP request passes to the core as call metadata (request id, credentials, client address, deadline),
and which of the core's metadata comes back as HTTP headers."""

from __future__ import annotations

import ipaddress
import uuid
from collections.abc import Iterable

from aiohttp import web

from .keys import CONFIG

__all__ = [
    "INITIAL_WAIT_S",
    "REQUEST_ID",
    "ROUTE_TRAILERS",
    "TRAILING",
    "UPSTREAM_MS",
    "call_metadata",
    "call_timeout",
    "client_address",
    "forwarded_headers",
]

REQUEST_ID = web.RequestKey("forge_request_id", str)
#: The core's trailing metadata of a unary call, for headers derived from it.
TRAILING = web.RequestKey("forge_trailing", list[tuple[str, str]])
#: Trailing key: milliseconds the core waited on the provider; the rest of a call's time is forge's overhead.
UPSTREAM_MS = "x-forge-upstream-ms"
_PASSED = ("authorization", "x-api-key", "user-agent")
#: Trailing keys of a unary answer that clients see as headers: which route answered, and how long upstream took.
ROUTE_TRAILERS = frozenset({"x-forge-provider", "x-forge-model", UPSTREAM_MS})
# Core metadata (initial, or trailing on unary answers and errors) sent on as HTTP headers: rate-limit state,
# which deployment served and after how many attempts, and whether the response cache answered.
_FORWARDED = frozenset({"x-forge-deployment", "x-forge-attempts", "x-forge-cache", "x-forge-route-rule"})
_RATE_LIMIT = "x-ratelimit-"


INITIAL_WAIT_S = 2.0
"""Longest a first heartbeat waits for a stream's initial metadata. The core sends it with the first message, or
about a second after admission (its prefill grace) when it has headers to send, so with the usual interval (15 s)
they are there when the first ping goes; a stream without any is pinged at most this much later."""


def forwarded_headers(*metadata: Iterable[tuple[str, str]]) -> dict[str, str]:
    """The HTTP headers carried by the core's metadata; later sources win (trailing over initial)."""
    out: dict[str, str] = {}
    for source in metadata:
        for key, value in source:
            if key.startswith(_RATE_LIMIT) or key in _FORWARDED:
                out[key] = value
    return out


def client_address(request: web.Request) -> str:
    """The client's address. `X-Forwarded-For` is believed only from a proxy on a loopback or private address:
    from anyone else it is the client's own claim, and per-address rate limits would be one header away from
    being bypassed."""
    remote = request.remote or ""
    forwarded = request.headers.get("x-forwarded-for", "").split(",")[0].strip()
    if forwarded and _is_proxy(remote):
        return forwarded
    return remote


def _is_proxy(remote: str) -> bool:
    try:
        address = ipaddress.ip_address(remote)
    except ValueError:
        return remote == ""  # a unix socket: a local proxy
    return address.is_loopback or address.is_private


def call_metadata(request: web.Request) -> list[tuple[str, str]]:
    """gRPC metadata for the core. The request id is the client's `x-request-id` when it sent one."""
    rid = request.headers.get("x-request-id") or uuid.uuid4().hex
    request[REQUEST_ID] = rid
    md = [("x-request-id", rid)]
    for name in _PASSED:
        value = request.headers.get(name)
        if value:
            md.append((name, value))
    client = client_address(request)
    if client:
        md.append(("x-forge-client-ip", client))
    return md


def call_timeout(request: web.Request) -> float | None:
    raw = request.headers.get("x-request-timeout")
    if raw:
        try:
            return max(0.001, float(raw))
        except ValueError:
            pass
    return request.app[CONFIG].default_timeout_s
