"""JSON Schemas for proto messages, as the edge reads and writes them: proto field names, enums as string
enums, int64 as integer-or-string, Struct as a free object, Timestamp as a date-time string. One component per
message and enum (`#/components/schemas/<full name>`), so recursive messages are plain `$ref`s.

The schemas stay within what OpenAPI 3.0 and 3.1 both accept (no type arrays, no `$ref` siblings, no `const`):
the bundled Swagger UI (4.x) renders only 3.0 documents, and /docs serves it the same document labelled 3.0.3.
"""

from __future__ import annotations

from typing import Any

from google.api import field_behavior_pb2
from google.protobuf.descriptor import Descriptor, EnumDescriptor, FieldDescriptor

__all__ = ["SchemaBuilder", "behaviors", "ref"]

Schema = dict[str, Any]
_T = FieldDescriptor

_INT32 = {"type": "integer", "format": "int32", "minimum": -(2**31), "maximum": 2**31 - 1}
_UINT32 = {"type": "integer", "format": "int32", "minimum": 0, "maximum": 2**32 - 1}
# Written as numbers within ±2^53 and as strings beyond (see encode.py); accepted either way. The string form
# is limited to 18 digits so that any value it admits is in range.
_INT64 = {
    "oneOf": [
        {"type": "integer", "format": "int64", "minimum": -(2**63), "maximum": 2**63 - 1},
        {"type": "string", "pattern": "^-?[0-9]{1,18}$"},
    ]
}
_UINT64 = {
    "oneOf": [
        {"type": "integer", "format": "int64", "minimum": 0, "maximum": 2**64 - 1},
        {"type": "string", "pattern": "^[0-9]{1,19}$"},
    ]
}
_FLOAT32_MAX = 3.4028234663852886e38
_SCALARS: dict[int, Schema] = {
    _T.TYPE_STRING: {"type": "string"},
    _T.TYPE_BOOL: {"type": "boolean"},
    _T.TYPE_DOUBLE: {"type": "number", "format": "double"},
    _T.TYPE_FLOAT: {"type": "number", "format": "float", "minimum": -_FLOAT32_MAX, "maximum": _FLOAT32_MAX},
    _T.TYPE_INT32: _INT32,
    _T.TYPE_SINT32: _INT32,
    _T.TYPE_SFIXED32: _INT32,
    _T.TYPE_UINT32: _UINT32,
    _T.TYPE_FIXED32: _UINT32,
    _T.TYPE_INT64: _INT64,
    _T.TYPE_SINT64: _INT64,
    _T.TYPE_SFIXED64: _INT64,
    _T.TYPE_UINT64: _UINT64,
    _T.TYPE_FIXED64: _UINT64,
    _T.TYPE_BYTES: {"type": "string", "format": "byte"},
}
_WKT: dict[str, Schema] = {
    "google.protobuf.Timestamp": {"type": "string", "format": "date-time"},
    "google.protobuf.Duration": {"type": "string", "pattern": "^-?[0-9]+(\\.[0-9]{1,9})?s$"},
    "google.protobuf.FieldMask": {"type": "string", "description": "Comma-separated field paths."},
    "google.protobuf.Struct": {"type": "object", "additionalProperties": True},
    "google.protobuf.Value": {"description": "Any JSON value."},
    "google.protobuf.ListValue": {"type": "array", "items": {}},
    "google.protobuf.Empty": {"type": "object"},
    "google.protobuf.Any": {
        "type": "object",
        "properties": {"@type": {"type": "string"}},
        "required": ["@type"],
        "additionalProperties": True,
    },
    "google.protobuf.DoubleValue": _SCALARS[_T.TYPE_DOUBLE],
    "google.protobuf.FloatValue": _SCALARS[_T.TYPE_FLOAT],
    "google.protobuf.Int64Value": _INT64,
    "google.protobuf.UInt64Value": _UINT64,
    "google.protobuf.Int32Value": _INT32,
    "google.protobuf.UInt32Value": _UINT32,
    "google.protobuf.BoolValue": {"type": "boolean"},
    "google.protobuf.StringValue": {"type": "string"},
    "google.protobuf.BytesValue": _SCALARS[_T.TYPE_BYTES],
}
_B = field_behavior_pb2


def ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def behaviors(f: FieldDescriptor) -> set[int]:
    options = f.GetOptions()
    return set(options.Extensions[_B.field_behavior])


class SchemaBuilder:
    """Collects component schemas while operations ask for message and field schemas."""

    def __init__(self) -> None:
        self.components: dict[str, Schema] = {}

    def message(self, desc: Descriptor) -> Schema:
        """A `$ref` to the message's component (an inline schema for well-known types)."""
        wkt = _WKT.get(desc.full_name)
        if wkt is not None:
            return dict(wkt)
        if desc.full_name not in self.components:
            self.components[desc.full_name] = {}  # reserved first: recursive messages refer to it
            self.components[desc.full_name] = self.object(desc)
        return ref(desc.full_name)

    def object(self, desc: Descriptor, exclude: frozenset[str] = frozenset()) -> Schema:
        """The message as an object schema, without the `exclude`d top-level fields (set by the path)."""
        properties: dict[str, Schema] = {}
        required: list[str] = []
        for f in desc.fields:
            if f.name in exclude:
                continue
            properties[f.name] = self.field(f)
            if _B.REQUIRED in behaviors(f) and f.containing_oneof is None:
                required.append(f.name)
        schema: Schema = {"type": "object", "properties": properties, "additionalProperties": False}
        if required:
            schema["required"] = required
        return schema

    def enum(self, desc: EnumDescriptor) -> Schema:
        if desc.full_name not in self.components:
            self.components[desc.full_name] = {"type": "string", "enum": [v.name for v in desc.values]}
        return ref(desc.full_name)

    def value(self, f: FieldDescriptor) -> Schema:
        """One value of the field (an element, for repeated fields)."""
        if f.message_type is not None:
            return self.message(f.message_type)
        if f.enum_type is not None:
            return self.enum(f.enum_type)
        return dict(_SCALARS[f.type])

    def field(self, f: FieldDescriptor) -> Schema:
        entry = f.message_type
        if entry is not None and entry.GetOptions().map_entry:
            return {"type": "object", "additionalProperties": self.value(entry.fields_by_name["value"])}
        schema = {"type": "array", "items": self.value(f)} if f.is_repeated else self.value(f)
        notes: list[str] = [str(schema["description"])] if "description" in schema else []
        if f.json_name != _lower_camel(f.name):
            notes.append(f"Also accepted on input as `{f.json_name}`.")
        marks = behaviors(f)
        extra: Schema = {}
        if notes:
            extra["description"] = " ".join(notes)
        if _B.OUTPUT_ONLY in marks:
            extra["readOnly"] = True
        elif _B.INPUT_ONLY in marks:
            extra["writeOnly"] = True
        if not extra:
            return schema
        # OpenAPI 3.0 ignores the siblings of a $ref; allOf carries them in both versions.
        return {"allOf": [schema], **extra} if "$ref" in schema else {**schema, **extra}


def _lower_camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(p[:1].upper() + p[1:] for p in rest)
