"""OpenAI chat JSON ⇄ `forge.chat.v1`: the request body becomes a `ChatRequest`, a `ChatCompletion` becomes
OpenAI's `chat.completion` object. Nothing here knows a provider."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson
from forge.chat.v1 import chat_pb2
from forge.type.v1 import usage_pb2

from .errors import invalid_request
from .schema import (
    JSON,
    item_object,
    item_str,
    opt_bool,
    opt_int,
    opt_list,
    opt_number,
    opt_object,
    opt_str,
    req_list,
    req_object,
    req_str,
    type_error,
)

__all__ = ["FINISH_REASONS", "ChatCall", "completion_json", "parse_chat", "usage_json"]

FINISH_REASONS: dict[int, str] = {
    chat_pb2.FINISH_REASON_UNSPECIFIED: "stop",
    chat_pb2.FINISH_REASON_STOP: "stop",
    chat_pb2.FINISH_REASON_LENGTH: "length",
    chat_pb2.FINISH_REASON_TOOL_CALLS: "tool_calls",
    chat_pb2.FINISH_REASON_CONTENT_FILTER: "content_filter",
    # OpenAI has no word for these; a cancelled call has no reader left, and errors are reported on their own.
    chat_pb2.FINISH_REASON_CANCELLED: "stop",
    chat_pb2.FINISH_REASON_ERROR: "stop",
}
_INT32 = 2**31
_INT64 = 2**63


@dataclass(frozen=True, slots=True)
class ChatCall:
    chat: chat_pb2.ChatRequest
    model: str
    """As the client sent it; echoed in every answer so `id`/`model` stay the same across a stream."""
    stream: bool
    include_usage: bool


def _ranged(value: int | None, param: str, bound: int) -> int | None:
    # Protobuf raises ValueError on out-of-range ints: say so as a 400, not a 500.
    if value is not None and not -bound <= value < bound:
        raise invalid_request(f"'{param}' is out of range", param, "invalid_value")
    return value


def _content(value: object, param: str) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if not isinstance(value, list):
        raise type_error(param, "a string or an array of content parts", value)
    texts = []
    for j, raw in enumerate(value):
        pp = f"{param}[{j}]"
        part = item_object(raw, pp)
        kind = req_str(part, "type", pp)
        if kind != "text":
            raise invalid_request(
                f"content parts of type '{kind}' are not supported yet; send text parts only",
                f"{pp}.type",
                "unsupported_content_type",
            )
        texts.append(req_str(part, "text", pp))
    # Joined with a newline as vLLM does: separate parts stay separate words for the model.
    return "\n".join(texts)


def _message(raw: object, i: int) -> chat_pb2.Message:
    p = f"messages[{i}]"
    m = item_object(raw, p)
    msg = chat_pb2.Message(
        role=req_str(m, "role", p),
        content=_content(m.get("content"), f"{p}.content"),
        name=opt_str(m, "name", p) or "",
        tool_call_id=opt_str(m, "tool_call_id", p) or "",
    )
    for j, raw_call in enumerate(opt_list(m, "tool_calls", p) or ()):
        cp = f"{p}.tool_calls[{j}]"
        call = item_object(raw_call, cp)
        fn = req_object(call, "function", cp)
        fp = f"{cp}.function"
        msg.tool_calls.add(
            id=opt_str(call, "id", cp) or "",
            type=opt_str(call, "type", cp) or "function",
            function=chat_pb2.FunctionCall(name=req_str(fn, "name", fp), arguments=opt_str(fn, "arguments", fp) or ""),
        )
    return msg


def _tools(chat: chat_pb2.ChatRequest, raw_tools: list[Any]) -> None:
    for j, raw in enumerate(raw_tools):
        tp = f"tools[{j}]"
        tool = item_object(raw, tp)
        kind = opt_str(tool, "type", tp) or "function"
        if kind != "function":
            raise invalid_request(f"tools of type '{kind}' are not supported; use 'function'", f"{tp}.type")
        fn = req_object(tool, "function", tp)
        fp = f"{tp}.function"
        definition = chat_pb2.FunctionDefinition(
            name=req_str(fn, "name", fp), description=opt_str(fn, "description", fp) or ""
        )
        parameters = opt_object(fn, "parameters", fp)
        if parameters is not None:
            definition.parameters.update(parameters)
        chat.tools.add(type="function", function=definition)


def _tool_choice(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, dict):  # {"type": "function", "function": {"name": ...}}: force that function
        return req_str(req_object(value, "function", "tool_choice"), "name", "tool_choice.function")
    raise type_error("tool_choice", "a string or an object", value)


def _stop(value: object) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [item_str(s, f"stop[{i}]") for i, s in enumerate(value)]
    raise type_error("stop", "a string or an array of strings", value)


def parse_chat(body: JSON) -> ChatCall:
    """The body of `POST /v1/chat/completions` as a ChatRequest, or an OpenAIError naming the bad param."""
    model = req_str(body, "model")
    messages = [_message(m, i) for i, m in enumerate(req_list(body, "messages"))]
    n = opt_int(body, "n")
    if n is not None and n != 1:
        raise invalid_request("forge generates one choice per request: 'n' must be 1", "n", "unsupported_value")
    stream = bool(opt_bool(body, "stream"))
    options = opt_object(body, "stream_options")
    include_usage = bool(opt_bool(options, "include_usage", "stream_options")) if options is not None else False

    chat = chat_pb2.ChatRequest(
        model=model,
        messages=messages,
        stop=_stop(body.get("stop")),
        tool_choice=_tool_choice(body.get("tool_choice")),
        user=opt_str(body, "user") or "",
    )
    for key in ("temperature", "top_p", "presence_penalty", "frequency_penalty"):
        number = opt_number(body, key)
        if number is not None:
            setattr(chat, key, number)
    # max_completion_tokens superseded max_tokens; the newer name wins when a client sends both.
    legacy = _ranged(opt_int(body, "max_tokens"), "max_tokens", _INT32)
    newer = _ranged(opt_int(body, "max_completion_tokens"), "max_completion_tokens", _INT32)
    if (max_tokens := newer if newer is not None else legacy) is not None:
        chat.max_tokens = max_tokens
    if (seed := _ranged(opt_int(body, "seed"), "seed", _INT64)) is not None:
        chat.seed = seed
    _tools(chat, opt_list(body, "tools") or [])
    if (fmt := opt_object(body, "response_format")) is not None:
        chat.response_format.type = req_str(fmt, "type", "response_format")
        if (schema := opt_object(fmt, "json_schema", "response_format")) is not None:
            chat.response_format.json_schema.update(schema)
    for key, value in (opt_object(body, "metadata") or {}).items():
        chat.metadata[key] = item_str(value, f"metadata.{key}")
    return ChatCall(chat, model, stream, include_usage)


def usage_json(u: usage_pb2.Usage) -> JSON:
    return {"prompt_tokens": u.prompt_tokens, "completion_tokens": u.completion_tokens, "total_tokens": u.total_tokens}


def completion_json(reply: chat_pb2.ChatCompletion, completion_id: str, model: str) -> bytes:
    choices = []
    for choice in reply.choices:
        m = choice.message
        message: JSON = {"role": "assistant", "content": m.content, "refusal": None}
        if m.tool_calls:
            # OpenAI sends null content for a message that only calls tools.
            message["content"] = m.content or None
            message["tool_calls"] = [
                {
                    "id": c.id,
                    "type": c.type or "function",
                    "function": {"name": c.function.name, "arguments": c.function.arguments},
                }
                for c in m.tool_calls
            ]
        choices.append(
            {
                "index": choice.index,
                "message": message,
                "logprobs": None,
                "finish_reason": FINISH_REASONS.get(choice.finish_reason, "stop"),
            }
        )
    return orjson.dumps(
        {
            "id": completion_id,
            "object": "chat.completion",
            "created": reply.created,
            "model": model,
            "choices": choices,
            "usage": usage_json(reply.usage),
            "system_fingerprint": None,
        }
    )
