"""HTTP request → request message for one binding: the JSON body (`body: "*"` or one field), query parameters
and path variables become one dict keyed by proto field names, enum spellings are normalised, and a single
`json_format.ParseDict` builds the message. Every failure is a 400 (413 for an oversized body) naming the field.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import grpc
import orjson
from aiohttp import web
from google.protobuf import json_format
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message
from google.rpc import error_details_pb2, status_pb2

from ..errors import bad_request
from ..invoke import InvokeError
from ..keys import CONFIG
from .enums import EnumPlan, enum_plan
from .rules import Binding

__all__ = ["RequestParser", "edge_error", "parse_failure", "too_large"]

_T = FieldDescriptor
_BOOLS = {"true": True, "false": False, "1": True, "0": False}
# Well-known types a query parameter or path variable can carry as one string.
_SCALAR_WKT = {
    "google.protobuf.Timestamp",
    "google.protobuf.Duration",
    "google.protobuf.FieldMask",
    "google.protobuf.Value",
    "google.protobuf.DoubleValue",
    "google.protobuf.FloatValue",
    "google.protobuf.Int64Value",
    "google.protobuf.UInt64Value",
    "google.protobuf.Int32Value",
    "google.protobuf.UInt32Value",
    "google.protobuf.StringValue",
    "google.protobuf.BytesValue",
}
_FAILED = re.compile(r"Failed to parse (\w+) field: ")
_UNKNOWN = re.compile(r'has no field named "([^"]+)"')
_AT = re.compile(r"\s+at\s+\"?[\w.\[\]]+\"?\.*$")


def edge_error(code: grpc.StatusCode, reason: str, detail: str) -> InvokeError:
    """A failure the edge finds itself, in the same shape as the core's (status with ErrorInfo)."""
    status = status_pb2.Status(code=code.value[0], message=detail)
    status.details.add().Pack(error_details_pb2.ErrorInfo(reason=reason, domain="forge"))
    return InvokeError(code, detail, status)


def too_large(limit: int) -> InvokeError:
    detail = f"the request body is larger than {limit} bytes"
    return edge_error(grpc.StatusCode.RESOURCE_EXHAUSTED, "PAYLOAD_TOO_LARGE", detail)


@dataclass(frozen=True, slots=True)
class _Target:
    """Where a query parameter or path variable lands: proto names from the request message down."""

    names: tuple[str, ...]
    leaf: FieldDescriptor

    @property
    def dotted(self) -> str:
        return ".".join(self.names)


def _resolve(root: Descriptor, dotted: str) -> _Target | None:
    """`a.b` or `aB.c` (proto names or json_names at each level) → the field path, or None."""
    names: list[str] = []
    field: FieldDescriptor | None = None
    desc: Descriptor | None = root
    for part in dotted.split("."):
        if desc is None or (field is not None and field.is_repeated):
            return None  # a scalar has no sub-fields; a repeated message cannot be addressed by a dotted name
        field = desc.fields_by_name.get(part) or next((f for f in desc.fields if f.json_name == part), None)
        if field is None:
            return None
        names.append(field.name)
        desc = field.message_type
    return _Target(tuple(names), field) if field is not None else None


def _convert(target: _Target, raw: str) -> Any:
    """A query/path string as the JSON value ParseDict expects (it parses numbers, enums and times itself)."""
    leaf = target.leaf
    msg = leaf.message_type
    if msg is not None and msg.full_name not in _SCALAR_WKT and msg.full_name != "google.protobuf.BoolValue":
        raise bad_request(
            f"{target.dotted}: a message; set its fields instead ({target.dotted}.<field>)", target.dotted
        )
    if leaf.type == _T.TYPE_BOOL or (msg is not None and msg.full_name == "google.protobuf.BoolValue"):
        value = _BOOLS.get(raw.lower())
        if value is None:
            raise bad_request(f"{target.dotted}: expected true or false, got {raw!r}", target.dotted)
        return value
    return raw


def _put(obj: dict[str, Any], target: _Target, value: Any, aliases: Mapping[str, str]) -> None:
    """Sets a nested value by proto names. A json_name spelling of the same field (which the body may use) is
    dropped first, or ParseDict would see the field twice."""
    names = target.names
    for depth, name in enumerate(names):
        alias = aliases.get(name, name) if depth == 0 else name
        if alias != name:
            obj.pop(alias, None)
        if depth == len(names) - 1:
            obj[name] = value
        else:
            nested = obj.get(name)
            if not isinstance(nested, dict):
                nested = obj[name] = {}
            obj = nested


def parse_failure(err: Exception, strip: str) -> InvokeError:
    """ParseDict's message ("Failed to parse chat field: Failed to parse max_tokens field: …") → a 400 naming
    the field relative to what the client sent (without the body field when the body is one field)."""
    text = str(err)
    path: list[str] = []
    while (m := _FAILED.match(text)) is not None:
        path.append(m.group(1))
        text = text[m.end() :]
    unknown = _UNKNOWN.search(text)
    if unknown is not None:
        path.append(unknown.group(1))
    if strip and path and path[0] == strip:
        path = path[1:]
    field = ".".join(path) or None
    if unknown is not None:
        return bad_request(f"unknown field {field!r}", field)
    detail = _AT.sub("", text.split("\n", 1)[0].strip()).rstrip(".") or "invalid value"
    return bad_request(f"{field}: {detail}" if field else detail, field)


class RequestParser:
    """Everything about one binding's input, worked out once at start-up."""

    def __init__(self, binding: Binding) -> None:
        self._cls = binding.info.request_type
        desc = binding.info.descriptor.input_type
        self._aliases = {f.name: f.json_name for f in desc.fields}
        self._enums: EnumPlan | None = enum_plan(desc)
        self._path: list[tuple[str, _Target]] = []
        bound: set[str] = set()
        for var in binding.template.variables:
            if not var.field_path:
                continue
            target = _resolve(desc, var.name)
            if target is None:
                raise ValueError(f"{binding.template.text}: {var.name} is not a field of {desc.full_name}")
            self._path.append((var.group, target))
            bound.add(target.names[0])
        body = binding.body
        self._body = body
        self._body_field: FieldDescriptor | None = None
        if body and body != "*":
            self._body_field = desc.fields_by_name[body]
            bound.add(body)
        # Query parameters fill the fields neither the path nor the body sets (none with `body: "*"`).
        self._query_ok = body != "*"
        self._bound = frozenset(bound)
        self._desc = desc

    async def parse(self, request: web.Request) -> Message:
        data: dict[str, Any] = {}
        if self._body:
            payload = await self._read_json(request)
            if self._body_field is None:
                if not isinstance(payload, dict):
                    raise bad_request("the JSON body must be an object")
                data = payload
            else:
                f = self._body_field
                if f.message_type is not None and not f.is_repeated and not isinstance(payload, dict):
                    raise bad_request("the JSON body must be an object")
                data[f.name] = payload
        if request.query_string:
            self._query(request, data)
        for group, target in self._path:
            _put(data, target, _convert(target, request.match_info[group]), self._aliases)
        if self._enums is not None:
            self._enums.apply(data)
        message = self._cls()
        try:
            json_format.ParseDict(data, message)
        except (json_format.ParseError, ValueError, TypeError, AttributeError, RecursionError) as err:
            raise parse_failure(err, self._body if self._body_field is not None else "") from None
        return message

    async def _read_json(self, request: web.Request) -> Any:
        try:
            raw = await request.read()
        except web.HTTPRequestEntityTooLarge:
            raise too_large(request.app[CONFIG].max_body_bytes) from None
        if not raw.strip():
            return {}  # POSTs such as `/api/v1/cache/clear` are sent without a body
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError as err:
            raise bad_request(f"malformed JSON body: {err}") from None

    def _query(self, request: web.Request, data: dict[str, Any]) -> None:
        query = request.query
        for key in dict.fromkeys(query.keys()):
            if not self._query_ok:
                raise bad_request(f"unknown query parameter {key!r}: this route reads its fields from the body", key)
            target = _resolve(self._desc, key)
            if target is None:
                raise bad_request(f"unknown query parameter {key!r}", key)
            if target.names[0] in self._bound:
                raise bad_request(f"{key!r} is set by the path or the body, not the query", key)
            leaf = target.leaf
            if leaf.message_type is not None and leaf.message_type.GetOptions().map_entry:
                raise bad_request(f"{key!r} is a map; it cannot be set from the query", key)
            values = query.getall(key)
            if leaf.is_repeated:
                _put(data, target, [_convert(target, v) for v in values], self._aliases)
            elif len(values) > 1:
                raise bad_request(f"{key!r} given {len(values)} times; it takes one value", key)
            else:
                _put(data, target, _convert(target, values[0]), self._aliases)
