"""Checks on a chat request that need no provider: bad input fails fast with every bad field named."""

from __future__ import annotations

from .chat import ChatParams
from .errors import FieldViolation, InvalidArgument

__all__ = ["ROLES", "validate_chat"]

ROLES = frozenset({"system", "developer", "user", "assistant", "tool"})
MAX_STOP = 4


def validate_chat(params: ChatParams, prefix: str = "chat") -> None:
    bad: list[FieldViolation] = []
    if not params.messages:
        bad.append(FieldViolation(f"{prefix}.messages", "at least one message (or a prompt) is required"))
    for i, m in enumerate(params.messages):
        if m.role not in ROLES:
            bad.append(FieldViolation(f"{prefix}.messages[{i}].role", f"{m.role!r} is not one of {sorted(ROLES)}"))
        if m.role == "tool" and not m.tool_call_id:
            bad.append(FieldViolation(f"{prefix}.messages[{i}].tool_call_id", "required for role 'tool'"))
    _range(bad, prefix, "temperature", params.temperature, 0.0, 2.0)
    _range(bad, prefix, "top_p", params.top_p, 0.0, 1.0)
    _range(bad, prefix, "presence_penalty", params.presence_penalty, -2.0, 2.0)
    _range(bad, prefix, "frequency_penalty", params.frequency_penalty, -2.0, 2.0)
    if params.max_tokens is not None and params.max_tokens < 1:
        bad.append(FieldViolation(f"{prefix}.max_tokens", "must be at least 1"))
    if len(params.stop) > MAX_STOP:
        bad.append(FieldViolation(f"{prefix}.stop", f"at most {MAX_STOP} stop sequences"))
    for i, tool in enumerate(params.tools):
        if not tool.get("function", {}).get("name"):
            bad.append(FieldViolation(f"{prefix}.tools[{i}].function.name", "required"))
    if params.response_format and params.response_format.get("type") not in (
        "text",
        "json_object",
        "json_schema",
    ):
        bad.append(FieldViolation(f"{prefix}.response_format.type", "must be 'text', 'json_object' or 'json_schema'"))
    if bad:
        raise InvalidArgument(bad)


def _range(bad: list[FieldViolation], prefix: str, name: str, value: float | None, low: float, high: float) -> None:
    if value is not None and not low <= value <= high:
        bad.append(FieldViolation(f"{prefix}.{name}", f"must be between {low:g} and {high:g}"))
