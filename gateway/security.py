"""Edge security basics: response headers on every answer, limits on the request line and headers, and
cross-origin control.

- Every response (JSON, SSE, NDJSON, the /ws upgrade, errors) gets `X-Content-Type-Options: nosniff`,
  `X-Frame-Options: DENY` and `Referrer-Policy: no-referrer`, and a Content-Security-Policy: API answers
  `default-src 'none'` (nothing in them may run), HTML pages (/docs) only their own assets and inline scripts by
  hash. Set in `on_response_prepare`, so streamed responses get them before their first byte too.
- A request target over `max_url_bytes` answers 414; headers over the size or count limits answer 431; both
  with the edge's JSON error body. aiohttp's own parser limits are set above these (start_edge), so a client
  gets the JSON answer, not the parser's plain-text 400.
- CORS: only the configured origins. A request whose `Origin` is neither the edge itself nor allowed is refused
  (403) before it runs: a browser sends `Origin` on cross-site fetches and WebSocket handshakes, so a web page
  cannot drive a local forge (with auth off, an admin) even with requests that need no preflight.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Awaitable, Callable
from urllib.parse import urlsplit

import grpc
import orjson
from aiohttp import web
from google.rpc import error_details_pb2, status_pb2

from .errors import error_json
from .invoke import InvokeError
from .keys import CONFIG, EdgeConfig

__all__ = ["add_security_headers", "cross_origin", "request_limits", "security_headers_for"]

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

_FIXED = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
}
API_CSP = "default-src 'none'; frame-ancestors 'none'"
_PAGE_CSP = (
    "default-src 'self'; script-src 'self'{scripts}; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
    "font-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'none'"
)
_INLINE_SCRIPT = re.compile(rb"<script(?![^>]*\bsrc=)[^>]*>(.*?)</script>", re.DOTALL | re.IGNORECASE)
# "*" exposes every response header (request ids, x-ratelimit-*, retry-after, x-forge-*); it means a wildcard
# only for requests without credentials, which these are (bearer tokens, never cookies).
_EXPOSED = "*"
_ALLOWED_METHODS = "GET, POST, PUT, PATCH, DELETE, OPTIONS"


def refusal(status: int, reason: str, detail: str, code: grpc.StatusCode) -> web.Response:
    """The edge's JSON error body, `{"detail", "code", "error"}`, with an HTTP status no gRPC code maps to."""
    rpc_status = status_pb2.Status(code=code.value[0], message=detail)
    rpc_status.details.add().Pack(error_details_pb2.ErrorInfo(reason=reason, domain="forge"))
    body = orjson.dumps(error_json(InvokeError(code, detail, rpc_status)))
    return web.Response(status=status, body=body, content_type="application/json")


@web.middleware
async def request_limits(request: web.Request, handler: Handler) -> web.StreamResponse:
    cfg = request.app[CONFIG]
    if len(request.raw_path) > cfg.max_url_bytes:
        detail = f"the request target is longer than {cfg.max_url_bytes} bytes"
        return refusal(414, "URI_TOO_LONG", detail, grpc.StatusCode.INVALID_ARGUMENT)
    headers = request.raw_headers
    sizes = [len(k) + len(v) + 4 for k, v in headers]  # "name: value\r\n"
    if (
        len(headers) > cfg.max_headers
        or sum(sizes) > cfg.max_header_bytes
        or max(sizes, default=0) > (cfg.max_header_line_bytes)
    ):
        detail = (
            f"request headers must stay within {cfg.max_headers} fields, {cfg.max_header_line_bytes} bytes per "
            f"field and {cfg.max_header_bytes} bytes in all"
        )
        return refusal(431, "REQUEST_HEADERS_TOO_LARGE", detail, grpc.StatusCode.RESOURCE_EXHAUSTED)
    return await handler(request)


def _same_origin(origin: str, request: web.Request) -> bool:
    """Is `origin` the edge itself? Behind a proxy that rewrites Host, the public host is in X-Forwarded-Host — a
    header no cross-site page can add without a preflight, which a foreign origin does not pass."""
    netloc = urlsplit(origin).netloc.lower()
    forwarded = request.headers.get("X-Forwarded-Host", "").split(",")[0].strip().lower()
    return netloc == request.host.lower() or (bool(forwarded) and netloc == forwarded)


def _allowed(origin: str, cfg: EdgeConfig) -> bool:
    return "*" in cfg.cors_origins or origin.rstrip("/") in cfg.cors_origins


def _foreign_allowed_origin(request: web.Request) -> str | None:
    """The request's `Origin` when it is another site that CORS allows."""
    origin = request.headers.get("Origin")
    if origin is None or _same_origin(origin, request) or not _allowed(origin, request.app[CONFIG]):
        return None
    return origin


@web.middleware
async def cross_origin(request: web.Request, handler: Handler) -> web.StreamResponse:
    origin = request.headers.get("Origin")
    if origin is None or _same_origin(origin, request):
        return await handler(request)
    if not _allowed(origin, request.app[CONFIG]):
        detail = f"cross-origin requests from {origin} are not allowed (FORGE_CORS_ORIGINS lists the allowed origins)"
        return refusal(403, "ORIGIN_NOT_ALLOWED", detail, grpc.StatusCode.PERMISSION_DENIED)
    if request.method == "OPTIONS" and "Access-Control-Request-Method" in request.headers:
        headers = {
            "Access-Control-Allow-Methods": _ALLOWED_METHODS,
            "Access-Control-Allow-Headers": request.headers.get("Access-Control-Request-Headers", ""),
            "Access-Control-Max-Age": "600",
        }
        return web.Response(status=204, headers=headers)
    return await handler(request)


def _page_csp(body: bytes) -> str:
    hashes = "".join(
        f" 'sha256-{base64.b64encode(hashlib.sha256(m.group(1)).digest()).decode()}'"
        for m in _INLINE_SCRIPT.finditer(body)
    )
    return _PAGE_CSP.format(scripts=hashes)


def security_headers_for(response: web.StreamResponse) -> dict[str, str]:
    """The security headers `response` should carry (its own CSP for HTML pages)."""
    headers = dict(_FIXED)
    body = response.body if isinstance(response, web.Response) else None
    if response.content_type == "text/html" and isinstance(body, bytes):
        headers["Content-Security-Policy"] = _page_csp(body)
    else:
        headers["Content-Security-Policy"] = API_CSP
    return headers


async def add_security_headers(request: web.Request, response: web.StreamResponse) -> None:
    """`on_response_prepare`: runs for every response just before its headers are sent."""
    for name, value in security_headers_for(response).items():
        response.headers.setdefault(name, value)
    origin = _foreign_allowed_origin(request)
    if origin is not None:
        response.headers["Access-Control-Allow-Origin"] = origin
        response.headers["Access-Control-Expose-Headers"] = _EXPOSED
        response.headers.add("Vary", "Origin")
