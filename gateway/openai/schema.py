"""OpenAI's request bodies, checked field by field: the right JSON type or a 400 naming the param, as OpenAI
answers (`Invalid type for 'temperature': expected a number, but got a string instead.`).

Unknown fields are ignored, as OpenAI does for forward compatibility: a client built against a newer API still
works. Value checks (ranges, roles, stop count) are the core's job, so gRPC and OpenAI callers meet one rule.
A hand-written checker rather than pydantic: it is a direct dependency fewer, and the work is a few isinstance
calls per field."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson
from aiohttp import web

from .errors import OpenAIError, invalid_request

__all__ = [
    "item_object",
    "item_str",
    "opt_bool",
    "opt_int",
    "opt_list",
    "opt_number",
    "opt_object",
    "opt_str",
    "read_object",
    "req_list",
    "req_object",
    "req_str",
    "type_error",
]

JSON = dict[str, Any]

_NAMES: dict[type, str] = {
    str: "a string",
    bool: "a boolean",
    int: "an integer",
    float: "a number",
    list: "an array",
    dict: "an object",
    type(None): "null",
}

# OpenAI's own wording for an unparsable body, so tools that match on it keep working.
_BAD_JSON = (
    "We could not parse the JSON body of your request. (HINT: This likely means you aren't using your HTTP "
    "library correctly. The OpenAI API expects a JSON payload, but what was sent was not valid JSON.)"
)


async def read_object(request: web.Request, limit: int) -> JSON:
    """The body as a JSON object; 413 past `limit` bytes (checked before reading when the length is declared)."""
    too_large = invalid_request(f"the request body is larger than {limit} bytes", None, "request_too_large", 413)
    if request.content_length is not None and request.content_length > limit:
        raise too_large
    try:
        raw = await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise too_large from None
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise invalid_request(_BAD_JSON) from None
    if not isinstance(body, dict):
        raise invalid_request(f"the request body must be a JSON object, not {_NAMES.get(type(body), 'a value')}")
    return body


def type_error(param: str, expected: str, value: object) -> OpenAIError:
    got = _NAMES.get(type(value), type(value).__name__)
    return invalid_request(
        f"Invalid type for '{param}': expected {expected}, but got {got} instead.", param, "invalid_type"
    )


def _missing(param: str) -> OpenAIError:
    return invalid_request(f"Missing required parameter: '{param}'.", param, "missing_required_parameter")


def _path(prefix: str, key: str) -> str:
    return f"{prefix}.{key}" if prefix else key


def opt_str(obj: Mapping[str, Any], key: str, prefix: str = "") -> str | None:
    value = obj.get(key)
    if value is None or isinstance(value, str):
        return value
    raise type_error(_path(prefix, key), "a string", value)


def req_str(obj: Mapping[str, Any], key: str, prefix: str = "") -> str:
    value = opt_str(obj, key, prefix)
    if value is None:
        raise _missing(_path(prefix, key))
    return value


def opt_number(obj: Mapping[str, Any], key: str, prefix: str = "") -> float | None:
    value = obj.get(key)
    if value is None:
        return None
    # bool is an int subclass in Python, but `true` is not a number in JSON.
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    raise type_error(_path(prefix, key), "a number", value)


def opt_int(obj: Mapping[str, Any], key: str, prefix: str = "") -> int | None:
    value = obj.get(key)
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)  # 100.0 is what some JSON encoders write for 100
    raise type_error(_path(prefix, key), "an integer", value)


def opt_bool(obj: Mapping[str, Any], key: str, prefix: str = "") -> bool | None:
    value = obj.get(key)
    if value is None or isinstance(value, bool):
        return value
    raise type_error(_path(prefix, key), "a boolean", value)


def opt_object(obj: Mapping[str, Any], key: str, prefix: str = "") -> JSON | None:
    value = obj.get(key)
    if value is None or isinstance(value, dict):
        return value
    raise type_error(_path(prefix, key), "an object", value)


def req_object(obj: Mapping[str, Any], key: str, prefix: str = "") -> JSON:
    value = opt_object(obj, key, prefix)
    if value is None:
        raise _missing(_path(prefix, key))
    return value


def opt_list(obj: Mapping[str, Any], key: str, prefix: str = "") -> list[Any] | None:
    value = obj.get(key)
    if value is None or isinstance(value, list):
        return value
    raise type_error(_path(prefix, key), "an array", value)


def req_list(obj: Mapping[str, Any], key: str, prefix: str = "") -> list[Any]:
    value = opt_list(obj, key, prefix)
    if value is None:
        raise _missing(_path(prefix, key))
    return value


def item_object(value: object, param: str) -> JSON:
    if isinstance(value, dict):
        return value
    raise type_error(param, "an object", value)


def item_str(value: object, param: str) -> str:
    if isinstance(value, str):
        return value
    raise type_error(param, "a string", value)
