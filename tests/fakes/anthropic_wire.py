"""Anthropic Messages API (POST /v1/messages), unary and SSE, same options.

Lets litellm's ``anthropic/`` provider (with api_base) run against the fake.
"""

from __future__ import annotations

import secrets
from typing import Any, Final

import orjson
from aiohttp import web

from .scenario import Scenario, ScenarioError
from .state import record_of
from .streaming import StreamPlan, run_stream, run_unary
from .wire_common import (
    SLOT,
    TOOL_ARG_FRAGMENTS,
    begin,
    content_text,
    count_words,
    json_response,
    message_contents,
    read_object,
    split_template,
    token_pieces,
)

_ERROR_TYPES: Final[dict[int, str]] = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    529: "overloaded_error",
}


def _headers() -> dict[str, str]:
    return {"request-id": f"req_{secrets.token_hex(12)}"}


def error(status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
    type_ = _ERROR_TYPES.get(status, "api_error" if status >= 500 else "invalid_request_error")
    body = {"type": "error", "error": {"type": type_, "message": message}}
    return json_response(body, status, {**_headers(), **(headers or {})})


def _fail(sc: Scenario) -> web.Response:
    status = sc.fail or 500
    headers: dict[str, str] = {}
    if sc.retry_after is not None and status in (429, 503, 529):
        headers["retry-after"] = f"{sc.retry_after:g}"
    return error(status, f"fake upstream failure (HTTP {status})", headers)


def _bad_key(request: web.Request) -> bool:
    bearer = request.headers.get("Authorization", "").partition(" ")[2].strip()
    return "bad-key" in (request.headers.get("x-api-key"), bearer)


def _event(name: str, data: object) -> bytes:
    return b"event: " + name.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


def _usage(prompt: int, output: int) -> dict[str, int]:
    return {
        "input_tokens": prompt,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
        "output_tokens": output,
    }


async def messages(request: web.Request) -> web.StreamResponse:
    rec = record_of(request)
    body = await read_object(request, rec)
    if body is None:
        return error(400, "invalid JSON body")
    stream = body.get("stream") is True
    try:
        sc = begin(request, rec, body.get("model"), stream)
    except ScenarioError as exc:
        return error(400, str(exc))
    if _bad_key(request):
        return error(401, "invalid x-api-key")
    if sc.fail:
        return _fail(sc)
    msgs = body.get("messages")
    if not isinstance(msgs, list) or not msgs:
        return error(400, "messages: at least one message is required")
    limit = body.get("max_tokens")
    if not isinstance(limit, int) or isinstance(limit, bool):
        return error(400, "max_tokens: Field required")

    system = body.get("system")
    prompt = count_words([*message_contents(msgs), system])
    tool = sc.tool_call if body.get("tools") else None
    count = min(sc.tokens, limit)
    stop_reason = "tool_use" if tool else ("max_tokens" if count < sc.tokens else "end_turn")
    msg_id = f"msg_{secrets.token_hex(12)}"
    tool_id = f"toolu_{secrets.token_hex(12)}"

    if stream:
        if tool:
            block: dict[str, Any] = {"type": "tool_use", "id": tool_id, "name": tool, "input": {}}
            slot: dict[str, Any] = {"type": "input_json_delta", "partial_json": SLOT}
            pieces = [orjson.dumps(f)[1:-1] for f in TOOL_ARG_FRAGMENTS]
        else:
            block = {"type": "text", "text": ""}
            slot = {"type": "text_delta", "text": SLOT}
            pieces = token_pieces(count)
        start: dict[str, Any] = {
            "id": msg_id,
            "type": "message",
            "role": "assistant",
            "model": sc.base,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": _usage(prompt, 1),
        }
        head = (
            _event("message_start", {"type": "message_start", "message": start})
            + _event("content_block_start", {"type": "content_block_start", "index": 0, "content_block": block})
            + _event("ping", {"type": "ping"})
        )
        prefix, suffix = split_template(
            _event("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": slot})
        )
        tail = (
            _event("content_block_stop", {"type": "content_block_stop", "index": 0})
            + _event(
                "message_delta",
                {
                    "type": "message_delta",
                    "delta": {"stop_reason": stop_reason, "stop_sequence": None},
                    "usage": {"output_tokens": len(pieces)},
                },
            )
            + _event("message_stop", {"type": "message_stop"})
        )
        plan = StreamPlan(
            content_type="text/event-stream; charset=utf-8",
            head=head,
            prefix=prefix,
            suffix=suffix,
            pieces=pieces,
            tail=lambda: tail,
            malformed=b"event: content_block_delta\ndata: {not json\n\n",
            headers=_headers(),
        )
        return await run_stream(request, rec, sc, plan)

    n = len(TOOL_ARG_FRAGMENTS) if tool else count
    content: list[dict[str, Any]] = (
        [{"type": "tool_use", "id": tool_id, "name": tool, "input": {"x": 1}}]
        if tool
        else [{"type": "text", "text": content_text(count)}]
    )
    payload = {
        "id": msg_id,
        "type": "message",
        "role": "assistant",
        "model": sc.base,
        "content": content,
        "stop_reason": stop_reason,
        "stop_sequence": None,
        "usage": _usage(prompt, n),
    }
    return await run_unary(request, rec, sc, n, lambda: json_response(payload, headers=_headers()))


def add_routes(app: web.Application) -> None:
    app.router.add_post("/v1/messages", messages)
