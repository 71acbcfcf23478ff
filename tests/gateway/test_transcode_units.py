"""Units of the transcoder without a server: the compiled encoder against `MessageToDict` for every message type
(and a synthetic one with every field kind), enum spellings, path templates and route order."""

from __future__ import annotations

import math
import struct
import timeit
from typing import Any, cast

import orjson
import pytest
from forge.chat.v1 import chat_pb2
from forge.type.v1 import usage_pb2
from google.protobuf import (
    descriptor_pb2,
    descriptor_pool,
    json_format,
    message_factory,
    struct_pb2,
    timestamp_pb2,
    wrappers_pb2,
)
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message

from gateway.invoke import method_catalog
from gateway.transcode.encode import encoder_for
from gateway.transcode.enums import enum_plan, enum_spellings
from gateway.transcode.request import parse_failure
from gateway.transcode.rules import bindings, parse_template, registration_order

T = FieldDescriptor
MESSAGES: dict[str, type[Message]] = {}
for _info in method_catalog().values():
    MESSAGES[_info.request_type.DESCRIPTOR.full_name] = _info.request_type
    MESSAGES[_info.response_type.DESCRIPTOR.full_name] = _info.response_type


def reference(message: Message) -> Any:
    return json_format.MessageToDict(
        message,
        preserving_proto_field_name=True,
        always_print_fields_with_no_presence=True,
        unquote_int64_if_possible=True,
    )


def encoded(message: Message) -> Any:
    return orjson.loads(orjson.dumps(encoder_for(descriptor(message))(message)))


def descriptor(message: Message | type[Message]) -> Descriptor:
    return cast(Descriptor, message.DESCRIPTOR)  # the stubs type it as the pure-Python or the upb class


def sample(f: Any) -> Any:
    if f.enum_type is not None:
        return f.enum_type.values[-1].number
    return {
        T.TYPE_STRING: 's\u00e9"\n',
        T.TYPE_BOOL: True,
        T.TYPE_DOUBLE: 1.5,
        T.TYPE_FLOAT: 0.25,
        T.TYPE_BYTES: b"\x00\xff",
    }.get(f.type, 7)


def fill(m: Message, depth: int = 0) -> Message:
    """Sets every field (one member per oneof), nested messages to a depth of 3."""
    for f in m.DESCRIPTOR.fields:
        oneof = f.containing_oneof
        if oneof is not None and len(oneof.fields) > 1 and m.WhichOneof(oneof.name):
            continue
        value = getattr(m, f.name)
        entry = f.message_type
        if entry is not None and entry.GetOptions().map_entry:
            key_field, value_field = entry.fields_by_name["key"], entry.fields_by_name["value"]
            key = "k" if key_field.type == T.TYPE_STRING else (True if key_field.type == T.TYPE_BOOL else 3)
            if value_field.message_type is not None:
                fill(value[key], depth + 1) if depth < 3 else value[key].SetInParent()
            else:
                value[key] = sample(value_field)
        elif f.is_repeated:
            if entry is not None:
                if depth < 3:
                    fill(value.add(), depth + 1)
            else:
                value.extend([sample(f), sample(f)])
        elif entry is not None:
            name = entry.full_name
            if name == "google.protobuf.Timestamp":
                value.FromSeconds(1_700_000_000)
            elif name == "google.protobuf.Struct":
                value.update({"a": 1, "b": [1, "x", None]})
            elif name == "google.protobuf.Value":
                value.string_value = "v"
            elif name == "google.protobuf.ListValue":
                value.extend([1, "x"])
            elif name == "google.protobuf.FieldMask":
                value.paths.extend(["a.b", "c"])
            elif name.startswith("google.protobuf.") and "value" in entry.fields_by_name:
                value.value = sample(entry.fields_by_name["value"])
            elif depth < 3:
                fill(value, depth + 1)
            else:
                value.SetInParent()
        else:
            setattr(m, f.name, sample(f))
    return m


@pytest.mark.parametrize("name", sorted(MESSAGES))
def test_encoder_matches_message_to_dict(name: str) -> None:
    cls = MESSAGES[name]
    for message in (cls(), fill(cls())):
        assert encoded(message) == orjson.loads(orjson.dumps(reference(message)))


def _synthetic() -> type[Message]:
    """A message with every field kind the contracts do not use yet (keyword names, int map keys, bytes…)."""
    pool = descriptor_pool.Default()
    name = "forge_transcode_test.Everything"
    for module in (struct_pb2, timestamp_pb2, wrappers_pb2):  # imported: their files are in the default pool
        assert module.DESCRIPTOR.name
    try:
        return message_factory.GetMessageClass(pool.FindMessageTypeByName(name))
    except KeyError:
        pass
    F = descriptor_pb2.FieldDescriptorProto
    file = descriptor_pb2.FileDescriptorProto(
        name="forge_transcode_test.proto",
        package="forge_transcode_test",
        syntax="proto3",
        dependency=[
            "google/protobuf/timestamp.proto",
            "google/protobuf/wrappers.proto",
            "google/protobuf/struct.proto",
        ],
    )
    file.enum_type.add(name="Color").value.extend(
        [
            descriptor_pb2.EnumValueDescriptorProto(name=n, number=i)
            for i, n in enumerate(["COLOR_UNSPECIFIED", "COLOR_RED"])
        ]
    )
    inner = file.message_type.add(name="Inner")
    inner.field.add(name="name", number=1, type=F.TYPE_STRING, label=F.LABEL_OPTIONAL)
    inner.field.add(
        name="child", number=2, type=F.TYPE_MESSAGE, type_name=".forge_transcode_test.Inner", label=F.LABEL_OPTIONAL
    )
    msg = file.message_type.add(name="Everything")

    def add(name: str, number: int, kind: int, label: int = F.LABEL_OPTIONAL, type_name: str = "", **kw: Any) -> None:
        if type_name:
            kw["type_name"] = type_name
        msg.field.add(name=name, number=number, type=kind, label=label, json_name=name, **kw)

    def map_entry(entry: str, key: int, value: int, value_type: str = "") -> None:
        nested = msg.nested_type.add(name=entry)
        nested.options.map_entry = True
        nested.field.add(name="key", number=1, type=key, label=F.LABEL_OPTIONAL)
        field = nested.field.add(name="value", number=2, type=value, label=F.LABEL_OPTIONAL)
        if value_type:
            field.type_name = value_type

    add("i64", 1, F.TYPE_INT64)
    add("u64", 2, F.TYPE_UINT64)
    add("f32", 3, F.TYPE_FLOAT)
    add("f64", 4, F.TYPE_DOUBLE)
    add("data", 5, F.TYPE_BYTES)
    add("color", 6, F.TYPE_ENUM, type_name=".forge_transcode_test.Color")
    map_entry("IntMapEntry", F.TYPE_INT32, F.TYPE_STRING)
    add("int_map", 7, F.TYPE_MESSAGE, F.LABEL_REPEATED, ".forge_transcode_test.Everything.IntMapEntry")
    map_entry("FlagMapEntry", F.TYPE_BOOL, F.TYPE_MESSAGE, ".forge_transcode_test.Inner")
    add("flag_map", 8, F.TYPE_MESSAGE, F.LABEL_REPEATED, ".forge_transcode_test.Everything.FlagMapEntry")
    add("floats", 9, F.TYPE_FLOAT, F.LABEL_REPEATED)
    msg.oneof_decl.add(name="choice")
    add("a", 10, F.TYPE_STRING, oneof_index=0)
    add("b", 11, F.TYPE_MESSAGE, type_name=".forge_transcode_test.Inner", oneof_index=0)
    msg.oneof_decl.add(name="_maybe")
    add("maybe", 12, F.TYPE_INT32, oneof_index=1, proto3_optional=True)
    add("at", 13, F.TYPE_MESSAGE, type_name=".google.protobuf.Timestamp")
    add("big", 14, F.TYPE_MESSAGE, type_name=".google.protobuf.Int64Value")
    add("free", 15, F.TYPE_MESSAGE, type_name=".google.protobuf.Struct")
    add("colors", 16, F.TYPE_ENUM, F.LABEL_REPEATED, ".forge_transcode_test.Color")
    add("longs", 17, F.TYPE_INT64, F.LABEL_REPEATED)
    add("from", 18, F.TYPE_STRING)
    add("blobs", 19, F.TYPE_BYTES, F.LABEL_REPEATED)
    map_entry("ColorMapEntry", F.TYPE_STRING, F.TYPE_ENUM, ".forge_transcode_test.Color")
    add("color_map", 20, F.TYPE_MESSAGE, F.LABEL_REPEATED, ".forge_transcode_test.Everything.ColorMapEntry")
    add("doubles", 21, F.TYPE_DOUBLE, F.LABEL_REPEATED)
    pool.Add(file)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName(name))


def test_encoder_every_field_kind() -> None:
    cls = _synthetic()
    message = fill(cls())
    assert encoded(message) == orjson.loads(orjson.dumps(reference(message)))
    message.b.name = "inner"  # type: ignore[attr-defined]  # the other oneof member
    message.b.child.name = "grandchild"  # type: ignore[attr-defined]
    out = encoded(message)
    assert "a" not in out and out["b"] == {"name": "inner", "child": {"name": "grandchild"}}
    assert out["from"] == 's\u00e9"\n' and out["int_map"] == {"3": 's\u00e9"\n'} and "true" in out["flag_map"]
    assert out["data"] == "AP8=" and out["color"] == "COLOR_RED" and out["maybe"] == 7
    empty = encoded(cls())
    assert "maybe" not in empty and "at" not in empty and "big" not in empty  # presence: only when set
    assert empty["i64"] == 0 and empty["color"] == "COLOR_UNSPECIFIED" and empty["floats"] == []


def test_encoder_deliberate_differences() -> None:
    message: Any = _synthetic()()
    message.i64, message.u64 = 2**53, 2**60
    message.longs.extend([-(2**53) - 1, 5])
    message.big.value = -(2**62)
    out = encoded(message)
    # Numbers within ±2^53 (exact everywhere), strings beyond (JavaScript would lose digits).
    assert out["i64"] == 2**53 and out["u64"] == str(2**60) and out["longs"] == [str(-(2**53) - 1), 5]
    assert out["big"] == str(-(2**62))
    message.f32 = 0.1
    message.floats.extend([0.1, 3.0])
    out = encoded(message)
    as_float32 = struct.unpack("f", struct.pack("f", 0.1))[0]
    assert out["f32"] == as_float32 and out["floats"] == [as_float32, 3.0]  # the float32, not its shortest repr
    message.f64 = math.nan
    message.doubles.extend([1.0, math.inf, -math.inf])
    message.floats.append(math.nan)
    out = encoded(message)
    assert out["f64"] == "NaN" and out["doubles"] == [1.0, "Infinity", "-Infinity"] and out["floats"][-1] == "NaN"


def test_encoder_is_much_faster_than_message_to_dict() -> None:
    event = chat_pb2.ChatEvent(
        sequence=5,
        delta=chat_pb2.ContentDelta(content="hello world"),
        running_usage=usage_pb2.Usage(completion_tokens=5, total_tokens=5),
    )
    encode = encoder_for(chat_pb2.ChatEvent.DESCRIPTOR)
    fast = min(timeit.repeat(lambda: orjson.dumps(encode(event)), number=2000, repeat=5))
    slow = min(timeit.repeat(lambda: orjson.dumps(reference(event)), number=2000, repeat=5))
    assert fast * 2.5 < slow, (fast, slow)  # measured ~6x (1.6 vs 9.5 µs per event)


# ------------------------------------------------------------------------------------------------ enums


def test_enum_spellings() -> None:
    from forge.type.v1 import task_type_pb2

    spell = enum_spellings(task_type_pb2.TaskType.DESCRIPTOR)
    assert spell["code_generation"] == "TASK_TYPE_CODE_GENERATION"
    assert spell["task_type_chat"] == "TASK_TYPE_CHAT"
    assert spell["question_answer"] == "TASK_TYPE_QUESTION_ANSWERING"
    assert spell["analysis"] == "TASK_TYPE_REASONING"
    assert spell["general"] == "TASK_TYPE_UNSPECIFIED"


def test_enum_plan_walks_only_what_leads_to_enums() -> None:
    assert enum_plan(chat_pb2.ContentDelta.DESCRIPTOR) is None
    plan = enum_plan(chat_pb2.BatchCreateChatCompletionsRequest.DESCRIPTOR)
    assert plan is not None
    body: dict[str, Any] = {"requests": [{"taskType": "Chat"}, {"task_type": "analysis"}, {"prompt": "x"}, 5]}
    plan.apply(body)
    assert body["requests"][:2] == [{"taskType": "TASK_TYPE_CHAT"}, {"task_type": "TASK_TYPE_REASONING"}]
    unknown: dict[str, Any] = {"requests": [{"task_type": "nope"}, {"task_type": 3}]}
    plan.apply(unknown)
    assert unknown == {"requests": [{"task_type": "nope"}, {"task_type": 3}]}  # left for ParseDict to judge


def _recursive_descriptor() -> Descriptor:
    return descriptor(_synthetic())


def test_enum_plan_recursive_message() -> None:
    plan = enum_plan(_recursive_descriptor())
    assert plan is not None
    body: dict[str, Any] = {"color": "red", "colors": ["RED", "color_red"], "color_map": {"k": "red"}}
    plan.apply(body)
    assert body == {"color": "COLOR_RED", "colors": ["COLOR_RED", "COLOR_RED"], "color_map": {"k": "COLOR_RED"}}


# ------------------------------------------------------------------------------------------- templates


@pytest.mark.parametrize(
    ("text", "route", "doc", "variables"),
    [
        ("/api/v1/models", "/api/v1/models", "/api/v1/models", []),
        ("/api/v1/models:pull", "/api/v1/models:pull", "/api/v1/models:pull", []),
        ("/api/v1/models/{name=**}", "/api/v1/models/{v0:.+}", "/api/v1/models/{name}", [("name",)]),
        ("/api/services/{service_name}/", "/api/services/{v0}/", "/api/services/{service_name}/", [("service_name",)]),
        ("/api/v1/jobs/{job_id}:cancel", "/api/v1/jobs/{v0}:cancel", "/api/v1/jobs/{job_id}:cancel", [("job_id",)]),
        ("/v1/{a.b}/x/{c=projects/*}", "/v1/{v0}/x/{v1:projects/[^/]+}", "/v1/{a.b}/x/{c}", [("a", "b"), ("c",)]),
    ],
)
def test_parse_template(text: str, route: str, doc: str, variables: list[tuple[str, ...]]) -> None:
    template = parse_template(text)
    assert template.route_path == route and template.doc_path == doc
    assert [v.field_path for v in template.variables] == variables


@pytest.mark.parametrize("text", ["api/v1", "/a/{b", "/a/{1x}", "/a:b:c"])
def test_parse_template_rejects(text: str) -> None:
    with pytest.raises(ValueError, match=r"template|segment|variable"):
        parse_template(text)


def test_registration_order_verbs_before_variables_and_multi_segment_last() -> None:
    order = [b.template.text for b in registration_order(bindings(method_catalog().values()))]
    assert order.index("/api/v1/jobs/{job_id}:cancel") < order.index("/api/v1/jobs/{job_id}")
    assert order.index("/api/v1/tasks/{task_id}:watch") < order.index("/api/v1/tasks/{task_id}")
    multi = [i for i, t in enumerate(order) if "=**" in t]
    assert multi and min(multi) > max(i for i, t in enumerate(order) if "=**" not in t)


def test_parse_failure_names_fields() -> None:
    cases = {
        "Failed to parse chat field: Failed to parse max_tokens field: bad value.": ("chat", "max_tokens"),
        'Message type "x.Y" has no field named "foo" at "Y".\n Available Fields(except extensions): "[]"': ("", "foo"),
        "Failed to parse chat field: Couldn't parse float: x at CreateChatCompletionRequest.chat.temperature.": (
            "",
            "chat",
        ),
    }
    for text, (strip, field) in cases.items():
        err = parse_failure(ValueError(text), strip)
        assert err.status is not None
        assert field in err.message and "Available" not in err.message and " at " not in err.message
