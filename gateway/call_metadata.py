"""What an HTTP request passes to the core as call metadata: request id, credentials, client address, deadline."""

from __future__ import annotations

import uuid

from aiohttp import web

from .keys import CONFIG

__all__ = ["REQUEST_ID", "TRAILING", "UPSTREAM_MS", "call_metadata", "call_timeout"]

REQUEST_ID = web.RequestKey("forge_request_id", str)
#: The core's trailing metadata of a unary call, for headers derived from it.
TRAILING = web.RequestKey("forge_trailing", list[tuple[str, str]])
#: Trailing key: milliseconds the core waited on the provider; the rest of a call's time is forge's overhead.
UPSTREAM_MS = "x-forge-upstream-ms"
_PASSED = ("authorization", "x-api-key", "user-agent")


def call_metadata(request: web.Request) -> list[tuple[str, str]]:
    """gRPC metadata for the core. The request id is the client's `x-request-id` when it sent one."""
    rid = request.headers.get("x-request-id") or uuid.uuid4().hex
    request[REQUEST_ID] = rid
    md = [("x-request-id", rid)]
    for name in _PASSED:
        value = request.headers.get(name)
        if value:
            md.append((name, value))
    client = request.headers.get("x-forwarded-for", "").split(",")[0].strip() or (request.remote or "")
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
