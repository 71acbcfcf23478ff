"""OpenAI error bodies, status by status, as api.openai.com sends them.

Clients classify failures from these (the openai SDK by status, litellm and
forge partly by ``type``/``code``), so the shapes and the values OpenAI uses
matter more than the wording.
"""

from __future__ import annotations

import secrets
from typing import Final

from aiohttp import web

from .scenario import Scenario
from .wire_common import json_response

# status -> (type, code, message template; {model} is the requested base).
_FAILS: Final[dict[int, tuple[str, str | None, str]]] = {
    400: ("invalid_request_error", None, "Invalid request (fake upstream fail=400)."),
    401: (
        "invalid_request_error",
        "invalid_api_key",
        "Incorrect API key provided: sk-fake. You can find your API key at "
        "https://platform.openai.com/account/api-keys.",
    ),
    403: (
        "invalid_request_error",
        "unsupported_country_region_territory",
        "Country, region, or territory not supported",
    ),
    404: (
        "invalid_request_error",
        "model_not_found",
        "The model `{model}` does not exist or you do not have access to it.",
    ),
    429: (
        "requests",
        "rate_limit_exceeded",
        "Rate limit reached for {model} in organization org-fake on requests per "
        "min (RPM): Limit 3, Used 3, Requested 1. Please try again in 20s. Visit "
        "https://platform.openai.com/account/rate-limits to learn more.",
    ),
    500: (
        "server_error",
        None,
        "The server had an error while processing your request. Sorry about that!",
    ),
    503: (
        "server_error",
        None,
        "The engine is currently overloaded, please try again later.",
    ),
}


def request_id_headers() -> dict[str, str]:
    # The openai SDK surfaces x-request-id on responses and errors; forge may
    # log it, so every answer carries one like the real API.
    return {"x-request-id": f"req_{secrets.token_hex(16)}"}


def error_response(
    status: int,
    message: str,
    *,
    type_: str = "invalid_request_error",
    param: str | None = None,
    code: str | None = None,
    headers: dict[str, str] | None = None,
) -> web.Response:
    body = {"error": {"message": message, "type": type_, "param": param, "code": code}}
    return json_response(body, status, {**request_id_headers(), **(headers or {})})


def fail_response(sc: Scenario) -> web.Response:
    """The injected ``fail=`` status with OpenAI's body (+ Retry-After)."""
    status = sc.fail or 500
    default_type = "server_error" if status >= 500 else "invalid_request_error"
    type_, code, template = _FAILS.get(status, (default_type, None, f"Fake upstream failure (HTTP {status})."))
    headers: dict[str, str] = {}
    if sc.retry_after is not None and status in (429, 503):
        headers["Retry-After"] = f"{sc.retry_after:g}"
    return error_response(status, template.format(model=sc.base), type_=type_, code=code, headers=headers)


def bad_key_response(request: web.Request) -> web.Response | None:
    """401 for exactly ``Bearer bad-key``; every other key (or none) passes."""
    scheme, _, key = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or key.strip() != "bad-key":
        return None
    return error_response(
        401,
        "Incorrect API key provided: bad-key. You can find your API key at "
        "https://platform.openai.com/account/api-keys.",
        code="invalid_api_key",
    )
