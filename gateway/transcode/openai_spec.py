"""The OpenAI-format routes of the edge (gateway/openai), for /openapi.json: OpenAI's own request and response
shapes, compact — the fields forge reads or writes, not OpenAI's whole API. Values OpenAI sends as `null`
(`content` beside tool calls, `finish_reason` mid-stream, an error's `param`) get an open schema: `type: null`
does not exist in OpenAPI 3.0, which /docs renders."""

from __future__ import annotations

from typing import Any

__all__ = ["OPENAI_PATHS", "OPENAI_SCHEMAS"]


def _ref(name: str) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/openai.{name}"}


def _obj(required: list[str], **properties: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"type": "object", "properties": properties}
    if required:
        out["required"] = required
    return out


_S, _I, _B = {"type": "string"}, {"type": "integer"}, {"type": "boolean"}
_NULLABLE_S = {"description": "A string, or null."}
_USAGE = _obj(
    ["prompt_tokens", "completion_tokens", "total_tokens"], prompt_tokens=_I, completion_tokens=_I, total_tokens=_I
)
_TOOL_CALL = _obj(
    ["id", "type", "function"],
    id=_S,
    type={"type": "string", "enum": ["function"]},
    function=_obj(["name", "arguments"], name=_S, arguments={"type": "string", "description": "JSON-encoded."}),
)
_TOOL_CALL_DELTA = _obj(["index"], index=_I, id=_S, type=_S, function=_obj([], name=_S, arguments=_S))

OPENAI_SCHEMAS: dict[str, dict[str, Any]] = {
    "openai.ChatMessage": _obj(
        ["role"],
        role={"type": "string", "enum": ["system", "developer", "user", "assistant", "tool"]},
        content={
            "oneOf": [
                {"type": "string"},
                {"type": "array", "items": _obj(["type"], type=_S, text=_S)},
            ]
        },
        name=_S,
        tool_calls={"type": "array", "items": _ref("ToolCall")},
        tool_call_id=_S,
    ),
    "openai.ToolCall": _TOOL_CALL,
    "openai.CreateChatCompletionRequest": _obj(
        ["model", "messages"],
        model=_S,
        messages={"type": "array", "minItems": 1, "items": _ref("ChatMessage")},
        stream=_B,
        stream_options=_obj([], include_usage=_B),
        temperature={"type": "number", "minimum": 0, "maximum": 2},
        top_p={"type": "number", "minimum": 0, "maximum": 1},
        n={"type": "integer", "minimum": 1, "maximum": 1},
        max_tokens={"type": "integer", "minimum": 1},
        max_completion_tokens={"type": "integer", "minimum": 1},
        stop={"oneOf": [{"type": "string"}, {"type": "array", "items": _S, "maxItems": 4}]},
        presence_penalty={"type": "number", "minimum": -2, "maximum": 2},
        frequency_penalty={"type": "number", "minimum": -2, "maximum": 2},
        seed=_I,
        tools={
            "type": "array",
            "items": _obj(
                ["type", "function"],
                type={"type": "string", "enum": ["function"]},
                function=_obj(["name"], name=_S, description=_S, parameters={"type": "object"}),
            ),
        },
        tool_choice={
            "oneOf": [
                {"type": "string", "enum": ["none", "auto", "required"]},
                _obj(["type", "function"], type=_S, function=_obj(["name"], name=_S)),
            ]
        },
        response_format=_obj(
            ["type"],
            type={"type": "string", "enum": ["text", "json_object", "json_schema"]},
            json_schema={"type": "object"},
        ),
        user=_S,
    ),
    "openai.ChatCompletion": _obj(
        ["id", "object", "created", "model", "choices"],
        id=_S,
        object={"type": "string", "enum": ["chat.completion"]},
        created=_I,
        model=_S,
        choices={
            "type": "array",
            "items": _obj(
                ["index", "message", "finish_reason"],
                index=_I,
                message=_obj(
                    ["role"],
                    role=_S,
                    content=_NULLABLE_S,
                    tool_calls={"type": "array", "items": _ref("ToolCall")},
                ),
                finish_reason=_S,
            ),
        },
        usage=_USAGE,
    ),
    "openai.ChatCompletionChunk": _obj(
        ["id", "object", "created", "model", "choices"],
        id=_S,
        object={"type": "string", "enum": ["chat.completion.chunk"]},
        created=_I,
        model=_S,
        choices={
            "type": "array",
            "items": _obj(
                ["index", "delta"],
                index=_I,
                delta=_obj([], role=_S, content=_NULLABLE_S, tool_calls={"type": "array", "items": _TOOL_CALL_DELTA}),
                finish_reason=_NULLABLE_S,
            ),
        },
        usage={"description": "With `stream_options.include_usage`: the usage, on the last chunk (choices: [])."},
    ),
    "openai.Model": _obj(
        ["id", "object", "owned_by"], id=_S, object={"type": "string", "enum": ["model"]}, created=_I, owned_by=_S
    ),
    "openai.ModelList": _obj(
        ["object", "data"], object={"type": "string", "enum": ["list"]}, data={"type": "array", "items": _ref("Model")}
    ),
    "openai.CreateEmbeddingRequest": _obj(
        ["model", "input"],
        model=_S,
        input={
            "oneOf": [
                {"type": "string"},
                {"type": "array", "minItems": 1, "items": _S},
                {"type": "array", "minItems": 1, "items": _I},
                {"type": "array", "minItems": 1, "items": {"type": "array", "items": _I}},
            ]
        },
        encoding_format={"type": "string", "enum": ["float", "base64"]},
        dimensions={"type": "integer", "minimum": 1},
        user=_S,
    ),
    "openai.CreateEmbeddingResponse": _obj(
        ["object", "data", "model"],
        object={"type": "string", "enum": ["list"]},
        data={
            "type": "array",
            "items": _obj(
                ["object", "index", "embedding"],
                object={"type": "string", "enum": ["embedding"]},
                index=_I,
                embedding={
                    "oneOf": [{"type": "array", "items": {"type": "number"}}, {"type": "string", "format": "byte"}]
                },
            ),
        },
        model=_S,
        usage=_obj(["prompt_tokens", "total_tokens"], prompt_tokens=_I, total_tokens=_I),
    ),
    "openai.Error": _obj(
        ["error"],
        error=_obj(["message", "type"], message=_S, type=_S, param=_NULLABLE_S, code=_NULLABLE_S),
    ),
}

_ERROR = {
    "description": "OpenAI's error shape (the SDK raises BadRequestError, NotFoundError, RateLimitError…).",
    "content": {"application/json": {"schema": _ref("Error")}},
}


def _op(op_id: str, summary: str, ok: dict[str, Any], **more: Any) -> dict[str, Any]:
    return {
        "operationId": op_id,
        "tags": ["OpenAI"],
        "summary": summary,
        **more,
        "responses": {"200": ok, "4XX": _ERROR, "5XX": _ERROR},
    }


def _json(name: str) -> dict[str, Any]:
    return {"description": "OK", "content": {"application/json": {"schema": _ref(name)}}}


OPENAI_PATHS: dict[str, dict[str, dict[str, Any]]] = {
    "/v1/chat/completions": {
        "post": _op(
            "openai_createChatCompletion",
            "Chat completion in OpenAI's format",
            {
                "description": "A completion; with `stream: true`, SSE chunks (`data: {chat.completion.chunk}` … "
                "`data: [DONE]`).",
                "content": {
                    "application/json": {"schema": _ref("ChatCompletion")},
                    "text/event-stream": {
                        "schema": {"type": "string", "description": "`data: ` + openai.ChatCompletionChunk JSON."}
                    },
                },
            },
            requestBody={
                "required": True,
                "content": {"application/json": {"schema": _ref("CreateChatCompletionRequest")}},
            },
        )
    },
    "/v1/models": {"get": _op("openai_listModels", "Models in OpenAI's format", _json("ModelList"))},
    "/v1/models/{model}": {
        "get": _op(
            "openai_retrieveModel",
            "One model in OpenAI's format",
            _json("Model"),
            parameters=[
                {
                    "name": "model",
                    "in": "path",
                    "required": True,
                    "schema": {"type": "string"},
                    "description": "May contain `/` (send it as %2F).",
                }
            ],
        )
    },
    "/v1/embeddings": {
        "post": _op(
            "openai_createEmbedding",
            "Embeddings in OpenAI's format",
            _json("CreateEmbeddingResponse"),
            requestBody={"required": True, "content": {"application/json": {"schema": _ref("CreateEmbeddingRequest")}}},
        )
    },
}
