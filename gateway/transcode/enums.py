"""Enum spellings the seeds send that protobuf's JSON parser rejects: the value name without the type prefix,
any case (`"code_generation"` → `TASK_TYPE_CODE_GENERATION`), and seed 003's own task-type words. The JSON body
is rewritten in place before `ParseDict`, walking only the fields that can lead to an enum."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from google.protobuf.descriptor import Descriptor, EnumDescriptor, FieldDescriptor

__all__ = ["EnumPlan", "enum_plan", "enum_spellings"]

# Seed 003 (Oxide) names three task types its own way (protos/README.md, "JSON and seed compatibility").
_ALIASES: dict[str, dict[str, str]] = {
    "forge.type.v1.TaskType": {
        "question_answer": "TASK_TYPE_QUESTION_ANSWERING",
        "analysis": "TASK_TYPE_REASONING",
        "general": "TASK_TYPE_UNSPECIFIED",
    }
}
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")

_ENUM, _ENUM_LIST, _ENUM_MAP, _MSG, _MSG_LIST, _MSG_MAP = range(6)


def enum_spellings(enum: EnumDescriptor) -> dict[str, str]:
    """Lower-case spelling → canonical value name."""
    prefix = _CAMEL.sub("_", enum.name).upper() + "_"
    out: dict[str, str] = {}
    for value in enum.values:
        out[value.name.lower()] = value.name
        if value.name.startswith(prefix):
            out[value.name[len(prefix) :].lower()] = value.name
    out.update(_ALIASES.get(enum.full_name, {}))
    return out


@dataclass(slots=True)
class EnumPlan:
    """For one message type: the JSON keys (proto name and json_name) whose values can hold an enum."""

    steps: dict[str, tuple[int, Any]] = field(default_factory=dict)

    def apply(self, obj: Mapping[str, Any]) -> None:
        if not isinstance(obj, dict):
            return  # not an object: ParseDict reports the type error with the field's name
        for key, (kind, arg) in self.steps.items():
            value = obj.get(key)
            if value is None:
                continue
            if kind == _ENUM:
                obj[key] = _canon(value, arg)
            elif kind == _ENUM_LIST and isinstance(value, list):
                obj[key] = [_canon(v, arg) for v in value]
            elif kind == _ENUM_MAP and isinstance(value, dict):
                obj[key] = {k: _canon(v, arg) for k, v in value.items()}
            elif kind == _MSG:
                arg.apply(value)
            elif kind == _MSG_LIST and isinstance(value, list):
                for item in value:
                    arg.apply(item)
            elif kind == _MSG_MAP and isinstance(value, dict):
                for item in value.values():
                    arg.apply(item)


def _canon(value: Any, spellings: dict[str, str]) -> Any:
    if isinstance(value, str):
        return spellings.get(value.lower(), value)
    return value


def _map_value(f: FieldDescriptor) -> FieldDescriptor | None:
    m = f.message_type
    return m.fields_by_name["value"] if m is not None and m.GetOptions().map_entry else None


def _children(desc: Descriptor) -> list[Descriptor]:
    out = []
    for f in desc.fields:
        target = _map_value(f) or f
        m = target.message_type
        if m is not None and not m.full_name.startswith("google.protobuf."):
            out.append(m)
    return out


def _has_enums(root: Descriptor, memo: dict[str, bool]) -> bool:
    """Fixpoint over every message reachable from `root`, so that recursive messages get the right answer."""
    if root.full_name in memo:
        return memo[root.full_name]
    reachable: dict[str, Descriptor] = {}
    todo = [root]
    while todo:
        d = todo.pop()
        if d.full_name not in reachable and d.full_name not in memo:
            reachable[d.full_name] = d
            todo.extend(_children(d))
    found = {n: any((_map_value(f) or f).enum_type is not None for f in d.fields) for n, d in reachable.items()}
    changed = True
    while changed:
        changed = False
        for n, d in reachable.items():
            if not found[n] and any(found.get(c.full_name, memo.get(c.full_name, False)) for c in _children(d)):
                found[n] = changed = True
    memo.update(found)
    return found[root.full_name]


_PLANS: dict[str, EnumPlan | None] = {}
_MEMO: dict[str, bool] = {}


def enum_plan(desc: Descriptor) -> EnumPlan | None:
    """None when no field of the message (transitively) is an enum: then nothing needs walking."""
    name = desc.full_name
    if name in _PLANS:
        return _PLANS[name]
    if not _has_enums(desc, _MEMO):
        _PLANS[name] = None
        return None
    plan = EnumPlan()
    _PLANS[name] = plan  # registered before filling so recursive messages reuse it
    for f in desc.fields:
        value_field = _map_value(f)
        target = value_field or f
        step: tuple[int, Any] | None = None
        if target.enum_type is not None:
            spell = enum_spellings(target.enum_type)
            step = (_ENUM_MAP if value_field else _ENUM_LIST if f.is_repeated else _ENUM, spell)
        elif target.message_type is not None and not target.message_type.full_name.startswith("google.protobuf."):
            sub = enum_plan(target.message_type)
            if sub is not None:
                step = (_MSG_MAP if value_field else _MSG_LIST if f.is_repeated else _MSG, sub)
        if step is not None:
            plan.steps[f.name] = step
            plan.steps[f.json_name] = step
    return plan
