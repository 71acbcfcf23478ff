"""Bits shared by the Ollama route modules: error bodies, model checks, NDJSON."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Final

import orjson
from aiohttp import web

from .scenario import Scenario, split_model
from .state import state_of
from .wire_common import json_response

NDJSON: Final = "application/x-ndjson"

_FAIL_MESSAGES: Final[dict[int, str]] = {
    400: "invalid request (fake upstream fail=400)",
    401: "unauthorized",
    403: "forbidden",
    404: 'model "{model}" not found, try pulling it first',
    429: "too many requests",
    500: "llama runner process has terminated: exit status 2",
    503: "server busy, please try again.  maximum pending requests exceeded",
}


def error(status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
    # Ollama's error body is a bare string under "error", unlike OpenAI.
    return json_response({"error": message}, status, headers)


def fail_response(sc: Scenario) -> web.Response:
    status = sc.fail or 500
    message = _FAIL_MESSAGES.get(status, f"fake upstream failure (HTTP {status})")
    headers: dict[str, str] = {}
    if sc.retry_after is not None and status in (429, 503):
        headers["Retry-After"] = f"{sc.retry_after:g}"
    return error(status, message.format(model=sc.base), headers)


def missing_model(request: web.Request, model: str) -> web.Response | None:
    """404 unless the model is installed or carries @options.

    Scenario names are always accepted so behaviour tests need no pull.
    """
    base, options = split_model(model)
    if options is not None or state_of(request).models.get(base) is not None:
        return None
    return error(404, f'model "{base}" not found, try pulling it first')


def timestamp() -> str:
    # RFC 3339 in UTC with a Z suffix, as Ollama's Go encoder produces.
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


def line(obj: object) -> bytes:
    return orjson.dumps(obj) + b"\n"


def model_name(body: dict[str, object]) -> str | None:
    """``model`` with the legacy ``name`` fallback Ollama still accepts."""
    name = body.get("model") or body.get("name")
    return name if isinstance(name, str) and name else None
