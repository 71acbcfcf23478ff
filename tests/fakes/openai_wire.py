"""OpenAI wire routes under /v1: chat completions and models (embeddings are
in openai_embeddings.py)."""

from __future__ import annotations

import secrets
import time
from typing import Any, Final

import orjson
from aiohttp import web

from . import openai_embeddings
from .openai_errors import bad_key_response, error_response, fail_response, request_id_headers
from .scenario import ScenarioError
from .state import record_of
from .streaming import StreamPlan, run_stream, run_unary
from .wire_common import (
    SLOT,
    TOOL_ARG_FRAGMENTS,
    TOOL_ARGUMENTS,
    begin,
    content_text,
    count_words,
    json_response,
    message_contents,
    read_object,
    split_template,
    token_pieces,
)

FINGERPRINT: Final = "fp_fake0000"
MODELS: Final = ("gpt-fake", "gpt-fake-2", "text-embedding-fake")
_MODEL_CREATED: Final = 1_700_000_000


def _usage(prompt: int, completion: int) -> dict[str, Any]:
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": 0,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


def _sse(obj: object) -> bytes:
    return b"data: " + orjson.dumps(obj) + b"\n\n"


def _choice(delta: dict[str, Any], finish: str | None) -> dict[str, Any]:
    return {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}


def _stream_plan(
    *,
    base: dict[str, Any],
    include_usage: bool,
    head_delta: dict[str, Any],
    slot_delta: dict[str, Any],
    pieces: list[bytes],
    finish: str,
    prompt: int,
) -> StreamPlan:
    # With include_usage OpenAI adds "usage": null to every chunk before the
    # usage chunk; without it the key is absent.
    null_usage: dict[str, Any] = {"usage": None} if include_usage else {}
    head = _sse({**base, "choices": [_choice(head_delta, None)], **null_usage})
    template = _sse({**base, "choices": [_choice(slot_delta, None)], **null_usage})
    prefix, suffix = split_template(template)
    tail = _sse({**base, "choices": [_choice({}, finish)], **null_usage})
    if include_usage:
        tail += _sse({**base, "choices": [], "usage": _usage(prompt, len(pieces))})
    tail += b"data: [DONE]\n\n"
    return StreamPlan(
        content_type="text/event-stream; charset=utf-8",
        head=head,
        prefix=prefix,
        suffix=suffix,
        pieces=pieces,
        tail=lambda: tail,
        malformed=b"data: {not json\n\n",
        headers=request_id_headers(),
    )


def _max_tokens(body: dict[str, Any]) -> int | None:
    for key in ("max_completion_tokens", "max_tokens"):
        value = body.get(key)
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    return None


async def chat_completions(request: web.Request) -> web.StreamResponse:
    rec = record_of(request)
    body = await read_object(request, rec)
    if body is None:
        return error_response(400, "We could not parse the JSON body of your request.")
    stream = body.get("stream") is True
    try:
        sc = begin(request, rec, body.get("model"), stream)
    except ScenarioError as exc:
        return error_response(400, str(exc), param="model")
    if (denied := bad_key_response(request)) is not None:
        return denied
    if sc.fail:
        return fail_response(sc)
    if not sc.base:
        return error_response(400, "you must provide a model parameter")
    messages = body.get("messages")
    if messages is None:
        return error_response(
            400,
            "Missing required parameter: 'messages'.",
            param="messages",
            code="missing_required_parameter",
        )
    if not isinstance(messages, list):
        return error_response(
            400,
            "Invalid type for 'messages': expected an array of objects.",
            param="messages",
            code="invalid_type",
        )
    if not messages:
        return error_response(
            400,
            "Invalid 'messages': empty array. Expected an array with minimum length 1, but got an empty array instead.",
            param="messages",
            code="empty_array",
        )
    if body.get("n", 1) not in (1, None):
        return error_response(400, "The fake upstream only supports n=1.", param="n")

    prompt = count_words(message_contents(messages))
    if sc.context_window is not None and prompt > sc.context_window:
        return error_response(
            400,
            f"This model's maximum context length is {sc.context_window} tokens. However, your messages "
            f"resulted in {prompt} tokens. Please reduce the length of the messages.",
            param="messages",
            code="context_length_exceeded",
        )
    tool = sc.tool_call if body.get("tools") else None
    limit = _max_tokens(body)
    count = sc.tokens if limit is None else min(sc.tokens, limit)
    finish = "length" if count < sc.tokens else "stop"
    cid = f"chatcmpl-{secrets.token_hex(15)}"
    created = int(time.time())
    call_id = f"call_{secrets.token_hex(12)}"

    if stream:
        stream_options = body.get("stream_options")
        include_usage = isinstance(stream_options, dict) and bool(stream_options.get("include_usage"))
        base = {
            "id": cid,
            "object": "chat.completion.chunk",
            "created": created,
            "model": sc.base,
            "service_tier": "default",
            "system_fingerprint": FINGERPRINT,
        }
        if tool:
            plan = _stream_plan(
                base=base,
                include_usage=include_usage,
                prompt=prompt,
                head_delta={
                    "role": "assistant",
                    "content": None,
                    "refusal": None,
                    "tool_calls": [
                        {
                            "index": 0,
                            "id": call_id,
                            "type": "function",
                            "function": {"name": tool, "arguments": ""},
                        }
                    ],
                },
                slot_delta={"tool_calls": [{"index": 0, "function": {"arguments": SLOT}}]},
                pieces=[orjson.dumps(f)[1:-1] for f in TOOL_ARG_FRAGMENTS],
                finish="tool_calls",
            )
        else:
            plan = _stream_plan(
                base=base,
                include_usage=include_usage,
                prompt=prompt,
                head_delta={"role": "assistant", "content": "", "refusal": None},
                slot_delta={"content": SLOT},
                pieces=token_pieces(count),
                finish=finish,
            )
        return await run_stream(request, rec, sc, plan)

    n = len(TOOL_ARG_FRAGMENTS) if tool else count

    def build() -> web.Response:
        message: dict[str, Any] = {
            "role": "assistant",
            "content": None if tool else content_text(count),
            "refusal": None,
            "annotations": [],
        }
        if tool:
            message["tool_calls"] = [
                {
                    "id": call_id,
                    "type": "function",
                    "function": {"name": tool, "arguments": TOOL_ARGUMENTS},
                }
            ]
        return json_response(
            {
                "id": cid,
                "object": "chat.completion",
                "created": created,
                "model": sc.base,
                "choices": [
                    {
                        "index": 0,
                        "message": message,
                        "logprobs": None,
                        "finish_reason": "tool_calls" if tool else finish,
                    }
                ],
                "usage": _usage(prompt, n),
                "service_tier": "default",
                "system_fingerprint": FINGERPRINT,
            },
            headers=request_id_headers(),
        )

    return await run_unary(request, rec, sc, n, build)


def _model_obj(model_id: str) -> dict[str, Any]:
    return {"id": model_id, "object": "model", "created": _MODEL_CREATED, "owned_by": "system"}


async def list_models(request: web.Request) -> web.StreamResponse:
    if (denied := bad_key_response(request)) is not None:
        return denied
    data = [_model_obj(m) for m in MODELS]
    return json_response({"object": "list", "data": data}, headers=request_id_headers())


async def retrieve_model(request: web.Request) -> web.StreamResponse:
    if (denied := bad_key_response(request)) is not None:
        return denied
    model_id = request.match_info["model"]
    if model_id not in MODELS:
        return error_response(
            404,
            f"The model '{model_id}' does not exist",
            param="model",
            code="model_not_found",
        )
    return json_response(_model_obj(model_id), headers=request_id_headers())


def add_routes(app: web.Application) -> None:
    app.router.add_post("/v1/chat/completions", chat_completions)
    app.router.add_get("/v1/models", list_models)
    app.router.add_get("/v1/models/{model}", retrieve_model)
    app.router.add_post("/v1/embeddings", openai_embeddings.embeddings)
