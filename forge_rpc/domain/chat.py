"""Chat requests and the events a generation produces, independent of any wire format."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "ChatMessage",
    "ChatParams",
    "Completion",
    "FinishReason",
    "Finished",
    "ProviderEvent",
    "TextDelta",
    "ToolCall",
    "ToolCallDelta",
    "Usage",
    "UsageReport",
]

JSON = dict[str, Any]


class FinishReason(enum.Enum):
    STOP = "stop"
    LENGTH = "length"
    TOOL_CALLS = "tool_calls"
    CONTENT_FILTER = "content_filter"
    CANCELLED = "cancelled"
    ERROR = "error"

    @classmethod
    def parse(cls, raw: str | None) -> FinishReason:
        """Maps the spellings providers use (OpenAI, Ollama's done_reason, Anthropic's stop_reason)."""
        return _FINISH_ALIASES.get(raw or "stop", cls.STOP)


_FINISH_ALIASES = {
    "stop": FinishReason.STOP,
    "end_turn": FinishReason.STOP,
    "stop_sequence": FinishReason.STOP,
    "length": FinishReason.LENGTH,
    "max_tokens": FinishReason.LENGTH,
    "tool_calls": FinishReason.TOOL_CALLS,
    "tool_use": FinishReason.TOOL_CALLS,
    "function_call": FinishReason.TOOL_CALLS,
    "content_filter": FinishReason.CONTENT_FILTER,
}


@dataclass(frozen=True, slots=True)
class ToolCall:
    id: str
    name: str
    arguments: str


@dataclass(slots=True)
class ChatMessage:
    role: str
    content: str = ""
    name: str = ""
    tool_calls: tuple[ToolCall, ...] = ()
    tool_call_id: str = ""

    def to_openai(self) -> JSON:
        """The message in OpenAI's JSON shape, which every provider adapter accepts."""
        out: JSON = {"role": self.role, "content": self.content}
        if self.name:
            out["name"] = self.name
        if self.tool_calls:
            out["tool_calls"] = [
                {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
                for c in self.tool_calls
            ]
        if self.tool_call_id:
            out["tool_call_id"] = self.tool_call_id
        return out


@dataclass(slots=True)
class ChatParams:
    """A validated chat request. `model` is the name the caller used; routing resolves it."""

    model: str
    messages: list[ChatMessage]
    temperature: float | None = None
    top_p: float | None = None
    max_tokens: int | None = None
    stop: list[str] = field(default_factory=list)
    seed: int | None = None
    tools: list[JSON] = field(default_factory=list)
    tool_choice: str | None = None
    response_format: JSON | None = None
    user: str = ""
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    metadata: dict[str, str] = field(default_factory=dict)
    task_type: str = ""

    def sampling(self) -> JSON:
        """The OpenAI-named sampling fields that are set, for adapters that forward them as they are."""
        out: JSON = {}
        for key in ("temperature", "top_p", "max_tokens", "seed", "presence_penalty", "frequency_penalty"):
            value = getattr(self, key)
            if value is not None:
                out[key] = value
        if self.stop:
            out["stop"] = self.stop
        if self.tools:
            out["tools"] = self.tools
        if self.tool_choice:
            out["tool_choice"] = _tool_choice_json(self.tool_choice)
        if self.response_format:
            out["response_format"] = self.response_format
        if self.user:
            out["user"] = self.user
        return out


def _tool_choice_json(choice: str) -> str | JSON:
    if choice in ("auto", "none", "required"):
        return choice
    return {"type": "function", "function": {"name": choice}}


@dataclass(slots=True)
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    estimated: bool = False

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


# Events a provider adapter yields while streaming. `chunks` counts the upstream chunks merged into one
# delta: the running completion-token count until the provider reports real usage.
@dataclass(slots=True)
class TextDelta:
    text: str
    chunks: int = 1


@dataclass(slots=True)
class ToolCallDelta:
    index: int
    id: str = ""
    name: str = ""
    arguments: str = ""


@dataclass(slots=True)
class UsageReport:
    prompt_tokens: int
    completion_tokens: int


@dataclass(slots=True)
class Finished:
    reason: FinishReason


ProviderEvent = TextDelta | ToolCallDelta | UsageReport | Finished


@dataclass(slots=True)
class Completion:
    """A whole answer, from a provider's unary call."""

    text: str
    finish: FinishReason
    tool_calls: list[ToolCall] = field(default_factory=list)
    usage: UsageReport | None = None
