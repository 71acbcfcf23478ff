"""The OpenAPI 3.1 document of the edge, generated from the same bindings the routes come from: every
transcoded route with its path and query parameters, request body and response schemas, plus the OpenAI
routes the edge serves (a static fragment, included where the route exists)."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from google.api import field_behavior_pb2
from google.protobuf.descriptor import Descriptor, FieldDescriptor

from .rules import Binding
from .schemas import Schema, SchemaBuilder, behaviors, ref

__all__ = ["build_document", "template_names"]

_QUERY_DEPTH = 3
# Query strings carry these well-known types as one string; other messages are addressed field by field.
_QUERY_WKT = {
    "google.protobuf.Timestamp",
    "google.protobuf.Duration",
    "google.protobuf.FieldMask",
    "google.protobuf.DoubleValue",
    "google.protobuf.FloatValue",
    "google.protobuf.Int64Value",
    "google.protobuf.UInt64Value",
    "google.protobuf.Int32Value",
    "google.protobuf.UInt32Value",
    "google.protobuf.BoolValue",
    "google.protobuf.StringValue",
    "google.protobuf.BytesValue",
}
_NAMES = re.compile(r"\{([^{}]+)\}")

_ERROR_SCHEMAS: dict[str, Schema] = {
    "forge.Error": {
        "type": "object",
        "description": "Every error of a transcoded route; `code` is the ErrorInfo reason (UPPER_SNAKE).",
        "required": ["detail", "code", "error"],
        "properties": {
            "detail": {"type": "string"},
            "code": {"type": "string"},
            "error": ref("google.rpc.Status"),
        },
    },
    "google.rpc.Status": {
        "type": "object",
        "properties": {
            "code": {"type": "integer", "format": "int32", "description": "The gRPC status code."},
            "message": {"type": "string"},
            "details": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {"@type": {"type": "string"}},
                    "additionalProperties": True,
                    "description": "ErrorInfo, BadRequest, RetryInfo, QuotaFailure…",
                },
            },
        },
    },
}
_ERROR_RESPONSE = {
    "description": "An error: gRPC status mapped to HTTP (400, 401, 403, 404, 409, 413, 429, 499, 501, 503, 504…).",
    "headers": {"retry-after": {"description": "Seconds to wait (429).", "schema": {"type": "integer"}}},
    "content": {"application/json": {"schema": ref("forge.Error")}},
}
_REQUEST_ID = {"description": "The request id (the client's, when it sent one).", "schema": {"type": "string"}}
_STREAM_NOTE = (
    " Server stream: NDJSON (one message per line) by default, SSE (`data: {json}`) with `Accept: text/event-stream`"
    ' (comment pings while waiting for the first message). An error after the first byte is a last line `{"error":'
    " {detail, code, error}}` (SSE: `event: error`)."
)


def template_names(path: str) -> list[str]:
    """The `{name}`s of an OpenAPI path template."""
    return _NAMES.findall(path)


def _query_parameters(
    schemas: SchemaBuilder, desc: Descriptor, skip: frozenset[str], prefix: str = "", depth: int = 0
) -> Iterable[Schema]:
    for f in desc.fields:
        if f.name in skip:
            continue
        name = prefix + f.name
        msg = f.message_type
        if msg is not None and msg.full_name not in _QUERY_WKT:
            if not f.is_repeated and depth < _QUERY_DEPTH:
                yield from _query_parameters(schemas, msg, frozenset(), name + ".", depth + 1)
            continue  # maps and repeated messages have no query form
        value = _query_value(schemas, f)
        if f.is_repeated:
            yield {
                "name": name,
                "in": "query",
                "schema": {"type": "array", "items": value},
                "style": "form",
                "explode": True,
            }
        else:
            yield {"name": name, "in": "query", "schema": value}


def _query_value(schemas: SchemaBuilder, f: FieldDescriptor) -> Schema:
    if f.type in (FieldDescriptor.TYPE_INT64, FieldDescriptor.TYPE_SINT64, FieldDescriptor.TYPE_SFIXED64):
        return {"type": "integer", "format": "int64"}  # a query value is text anyway: one form is enough
    if f.type in (FieldDescriptor.TYPE_UINT64, FieldDescriptor.TYPE_FIXED64):
        return {"type": "integer", "format": "int64", "minimum": 0}
    schema = schemas.value(f)
    return {k: v for k, v in schema.items() if k != "readOnly"}


def _field_at(desc: Descriptor, names: tuple[str, ...]) -> FieldDescriptor:
    field = desc.fields_by_name[names[0]]
    for name in names[1:]:
        assert field.message_type is not None  # RequestParser checked the path at route registration
        field = field.message_type.fields_by_name[name]
    return field


def _operation(b: Binding, schemas: SchemaBuilder) -> Schema:
    info = b.info
    req: Descriptor = info.descriptor.input_type
    res: Descriptor = info.descriptor.output_type
    params: list[Schema] = []
    in_path: set[str] = set()
    for var in b.template.variables:
        if var.field_path:
            in_path.add(var.field_path[0])
            leaf = _field_at(req, var.field_path)
            schema = _query_value(schemas, leaf)
        else:
            schema = {"type": "string"}
        param: Schema = {"name": var.name or var.group, "in": "path", "required": True, "schema": schema}
        if var.multi_segment:
            param["description"] = "May contain `/` (send it as is or as %2F)."
        params.append(param)
    op: Schema = {
        "operationId": f"{b.service}_{b.rpc}" + (f"_{b.index}" if b.index else ""),
        "tags": [b.service],
        "summary": b.rpc if not b.index else f"{b.rpc} (also at {b.template.text})",
        "description": f"gRPC `{info.full_name.lstrip('/').replace('/', '.')}`."
        + (_STREAM_NOTE if info.server_streaming else ""),
    }
    body: Schema = {}
    required: list[str] = []
    if b.body == "*":
        body = schemas.object(req, frozenset(in_path)) if in_path else schemas.message(req)
        required = [f.name for f in req.fields if f.name not in in_path and _is_required(f)]
    elif b.body:
        field = req.fields_by_name[b.body]
        body = schemas.field(field)
        required = [f.name for f in field.message_type.fields if _is_required(f)] if field.message_type else []
    if b.body:
        op["requestBody"] = {"required": bool(required), "content": {"application/json": {"schema": body}}}
    if b.body != "*":
        params += _query_parameters(schemas, req, frozenset(in_path | ({b.body} if b.body else set())))
    if params:
        op["parameters"] = params
    out = schemas.message(res)
    if b.response_body:
        out = schemas.field(res.fields_by_name[b.response_body])
    if info.server_streaming:
        content = {
            "application/x-ndjson": {"schema": out},
            "text/event-stream": {"schema": {"type": "string", "description": "`data: {json}` events."}},
        }
    else:
        content = {"application/json": {"schema": out}}
    op["responses"] = {
        "200": {"description": "OK", "headers": {"x-request-id": _REQUEST_ID}, "content": content},
        "4XX": {"$ref": "#/components/responses/Error"},
        "5XX": {"$ref": "#/components/responses/Error"},
    }
    return op


def _is_required(f: FieldDescriptor) -> bool:
    return field_behavior_pb2.REQUIRED in behaviors(f) and f.containing_oneof is None


def build_document(
    bindings: Iterable[Binding], version: str, extra_paths: Mapping[str, Schema], extra_schemas: Mapping[str, Schema]
) -> dict[str, Any]:
    schemas = SchemaBuilder()
    paths: dict[str, dict[str, Schema]] = {}
    for b in sorted(bindings, key=lambda b: (b.template.doc_path, b.http_method)):
        paths.setdefault(b.template.doc_path, {})[b.http_method.lower()] = _operation(b, schemas)
    for path, item in extra_paths.items():
        paths.setdefault(path, {}).update(item)
    components = {**schemas.components, **_ERROR_SCHEMAS, **extra_schemas}
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "forge",
            "version": version,
            "description": "REST transcoding of forge's gRPC contracts (proto field names on output, proto names "
            "or lowerCamel/json_name on input), plus the OpenAI-compatible routes.",
        },
        "paths": dict(sorted(paths.items())),
        "components": {
            "schemas": dict(sorted(components.items())),
            "responses": {"Error": _ERROR_RESPONSE},
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "apiKey": {"type": "apiKey", "in": "header", "name": "x-api-key"},
            },
        },
        "security": [{}, {"bearer": []}, {"apiKey": []}],
    }
