"""Proto message → JSON-ready dict (for orjson), compiled once per message type.

Same output as `json_format.MessageToDict(m, preserving_proto_field_name=True,
always_print_fields_with_no_presence=True, unquote_int64_if_possible=True)`: proto field names; fields without
presence always present (seed clients read `"done": false`, `"deleted": true`); message fields, `optional`
scalars and oneof members only when set; enums by name; well-known types in their JSON forms. Two deliberate
differences, both for clients and speed:
- int64/uint64 are JSON numbers within ±2^53 (exact in every JSON parser; the seeds' `tokens_used`, `total`,
  `completed` are numbers) and strings beyond, where a JavaScript client would otherwise lose digits.
- `float` fields are written as the double they widen to (0.1f → 0.10000000149011612): the same float32 on
  the way back, and no per-value shortest-repr search (embeddings carry thousands of them).

Why compiled: MessageToDict costs ~9 µs per streamed ChatEvent here; the generated straight-line function
~1.2 µs (measured, see tests/gateway/test_transcode_units.py). Per message type we generate one function of
plain attribute reads, exec it once, and cache it.
"""

from __future__ import annotations

import base64
import keyword
from collections.abc import Callable, Sequence
from typing import Any

from google.protobuf import json_format
from google.protobuf.descriptor import Descriptor, EnumDescriptor, FieldDescriptor
from google.protobuf.message import Message

__all__ = ["Encoder", "encoder_for"]

Encoder = Callable[[Message], Any]

_SAFE_INT = 2**53
_T = FieldDescriptor
_INT64 = {_T.TYPE_INT64, _T.TYPE_SINT64, _T.TYPE_SFIXED64, _T.TYPE_UINT64, _T.TYPE_FIXED64}
_FLOATS = {_T.TYPE_DOUBLE, _T.TYPE_FLOAT}


def _nonfinite(v: float) -> str:
    return "NaN" if v != v else ("Infinity" if v > 0 else "-Infinity")


def _float_list(values: Sequence[float]) -> list[float | str]:
    out: list[float | str] = list(values)
    total = sum(values)  # one C-level pass: any NaN/inf (or an overflow) makes the sum non-finite
    if total - total != 0:
        out = [v if v - v == 0 else _nonfinite(v) for v in values]
    return out


def _b64(v: bytes) -> str:
    return base64.b64encode(v).decode("ascii")


def _map_key(k: Any) -> str:
    return ("true" if k else "false") if isinstance(k, bool) else str(k)


def _as_dict(m: Message) -> Any:
    return json_format.MessageToDict(m, preserving_proto_field_name=True)


def _json_string(m: Any) -> Any:
    return m.ToJsonString()


def _int64(v: int) -> int | str:
    return v if -_SAFE_INT <= v <= _SAFE_INT else str(v)


def _wrapper(conv: Callable[[Any], Any]) -> Callable[[Any], Any]:
    return lambda m: conv(m.value)


def _identity(v: Any) -> Any:
    return v


def _float(v: float) -> float | str:
    return v if v - v == 0 else _nonfinite(v)


_WKT: dict[str, Callable[[Any], Any]] = {
    "google.protobuf.Timestamp": _json_string,
    "google.protobuf.Duration": _json_string,
    "google.protobuf.FieldMask": _json_string,
    "google.protobuf.Struct": _as_dict,
    "google.protobuf.Value": _as_dict,
    "google.protobuf.ListValue": _as_dict,
    "google.protobuf.Any": _as_dict,
    "google.protobuf.Empty": lambda m: {},
    "google.protobuf.DoubleValue": _wrapper(_float),
    "google.protobuf.FloatValue": _wrapper(_float),
    "google.protobuf.Int64Value": _wrapper(_int64),
    "google.protobuf.UInt64Value": _wrapper(_int64),
    "google.protobuf.Int32Value": _wrapper(_identity),
    "google.protobuf.UInt32Value": _wrapper(_identity),
    "google.protobuf.BoolValue": _wrapper(_identity),
    "google.protobuf.StringValue": _wrapper(_identity),
    "google.protobuf.BytesValue": _wrapper(_b64),
}

# The generated functions' globals: helpers, then one entry per compiled message type and enum table.
_NS: dict[str, Any] = {
    "_nonfinite": _nonfinite,
    "_float_list": _float_list,
    "_b64": _b64,
    "_map_key": _map_key,
    "_S": _SAFE_INT,
}
_FUNCS: dict[str, str] = {}


def encoder_for(desc: Descriptor) -> Encoder:
    fn: Encoder = _NS[_function(desc)]
    return fn


def _function(desc: Descriptor) -> str:
    name = _FUNCS.get(desc.full_name)
    if name is not None:
        return name
    name = f"_m{len(_FUNCS)}"
    _FUNCS[desc.full_name] = name  # before the body: recursive messages call it by name at run time
    wkt = _WKT.get(desc.full_name)
    if wkt is not None:
        _NS[name] = wkt
        return name
    lines = [f"def {name}(m):", "    out = {}"]
    oneofs_done: set[str] = set()
    for f in desc.fields:
        oneof = f.containing_oneof
        if oneof is not None and len(oneof.fields) > 1:
            if oneof.name not in oneofs_done:
                oneofs_done.add(oneof.name)
                lines.append(f"    w = m.WhichOneof({oneof.name!r})")
                for i, member in enumerate(oneof.fields):
                    lines.append(f"    {'if' if i == 0 else 'elif'} w == {member.name!r}:")
                    lines += ["        " + s for s in _assign(member)]
        elif f.has_presence:  # message fields, `optional` scalars, one-member (synthetic) oneofs
            lines.append(f"    if m.HasField({f.name!r}):")
            lines += ["        " + s for s in _assign(f)]
        else:
            lines += ["    " + s for s in _assign(f)]
    lines.append("    return out")
    exec("\n".join(lines), _NS)  # source built only from descriptor names (identifiers) and repr()'d keys
    return name


def _attr(f: FieldDescriptor) -> str:
    return f"m.{f.name}" if not keyword.iskeyword(f.name) else f"getattr(m, {f.name!r})"


def _enum_table(enum: EnumDescriptor) -> str:
    key = f"_e:{enum.full_name}"
    name = _FUNCS.get(key)
    if name is None:
        name = _FUNCS[key] = f"_e{len(_FUNCS)}"
        _NS[name] = {v.number: v.name for v in enum.values}
    return name


def _element(f: FieldDescriptor, x: str) -> str:
    """Expression converting one value `x` (a plain name, evaluated more than once) of field `f`."""
    if f.message_type is not None:
        return f"{_function(f.message_type)}({x})"
    if f.enum_type is not None:
        return f"{_enum_table(f.enum_type)}.get({x}, {x})"
    if f.type in _INT64:
        return f"({x} if -_S <= {x} <= _S else str({x}))"
    if f.type in _FLOATS:
        return f"({x} if {x} - {x} == 0 else _nonfinite({x}))"
    if f.type == _T.TYPE_BYTES:
        return f"_b64({x})"
    return x


def _assign(f: FieldDescriptor) -> list[str]:
    key, src = repr(f.name), _attr(f)
    entry = f.message_type if f.type == _T.TYPE_MESSAGE else None
    if entry is not None and entry.GetOptions().map_entry:
        k, v = entry.fields_by_name["key"], entry.fields_by_name["value"]
        ks = "k" if k.type == _T.TYPE_STRING else "_map_key(k)"
        return [f"out[{key}] = {{{ks}: {_element(v, 'x')} for k, x in {src}.items()}}"]
    if f.is_repeated:
        if f.type in _FLOATS:
            return [f"out[{key}] = _float_list({src})"]
        element = _element(f, "x")
        return [f"out[{key}] = list({src})" if element == "x" else f"out[{key}] = [{element} for x in {src}]"]
    element = _element(f, "v")
    return [f"out[{key}] = {src}"] if element == "v" else [f"v = {src}", f"out[{key}] = {element}"]
