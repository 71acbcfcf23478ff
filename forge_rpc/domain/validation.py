"""Checks on a chat request that need no provider: bad input fails fast with every bad field named."""

from __future__ import annotations

import re

from .chat import ChatParams
from .errors import FieldViolation, InvalidArgument

__all__ = ["MAX_MODEL_NAME", "ROLES", "model_name_violation", "validate_chat"]

ROLES = frozenset({"system", "developer", "user", "assistant", "tool"})
MAX_STOP = 4
MAX_MODEL_NAME = 256
# What real model names use: "gpt-4o-mini", "ollama/llama3.2:3b", "hf.co/org/Repo-GGUF:Q4_K_M",
# "claude@20240229", "@cf/meta/llama-3"; plus = & % ~ for option suffixes some gateways append. No whitespace,
# quotes, angle brackets or control characters: names reach logs, provider URLs and error messages.
_MODEL_NAME = re.compile(r"[A-Za-z0-9._:/@+=&%~,-]+")


def model_name_violation(name: str, field: str = "model") -> FieldViolation | None:
    """Why `name` cannot be a model name, or None when it can (the empty name means the default model)."""
    if not name:
        return None
    if len(name) > MAX_MODEL_NAME:
        return FieldViolation(field, f"at most {MAX_MODEL_NAME} characters")
    if not _MODEL_NAME.fullmatch(name):
        return FieldViolation(field, "letters, digits and . _ : / @ + = & % ~ , - only")
    if name.startswith("/") or ".." in name.split("/"):
        # Some providers put the model in a URL path: no absolute paths, no climbing out of it.
        return FieldViolation(field, "must not start with '/' or contain a '..' path segment")
    return None


def validate_chat(params: ChatParams, prefix: str = "chat") -> None:
    bad: list[FieldViolation] = []
    if (violation := model_name_violation(params.model, f"{prefix}.model")) is not None:
        bad.append(violation)
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
