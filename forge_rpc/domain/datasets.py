"""Training datasets: what an example may look like, checked before any trainer starts, and the held-out split.

An example is one JSON object: {"messages": [{"role", "content"}…]} (chat, with at least one assistant turn to
learn from), {"prompt", "completion"}, or {"text"} (plain text, e.g. from a RAG namespace). A bad dataset fails
early and names the line: an empty file, a line that is not such an object, an example longer than the limit.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["DatasetError", "check_example", "read_examples", "split_examples"]

_ROLES = frozenset({"system", "user", "assistant", "tool"})


@dataclass(slots=True)
class DatasetError(Exception):
    """The dataset cannot be trained on; `line` is 1-based (a file line, or an inline example's position)."""

    line: int
    problem: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.problem}" if self.line else self.problem


def _text_length(example: dict[str, Any]) -> int:
    if "messages" in example:
        return sum(len(m.get("content") or "") for m in example["messages"])
    return sum(len(example.get(k) or "") for k in ("prompt", "completion", "text"))


def check_example(example: Any, max_chars: int) -> str | None:
    """What is wrong with one example, or None when it can be trained on."""
    if not isinstance(example, dict):
        return "an example must be a JSON object"
    if "messages" in example:
        messages = example["messages"]
        if not isinstance(messages, list) or not messages:
            return '"messages" must be a non-empty list'
        for i, m in enumerate(messages):
            if not isinstance(m, dict) or not isinstance(m.get("content"), str):
                return f'messages[{i}] must be an object with a string "content"'
            if m.get("role") not in _ROLES:
                return f"messages[{i}].role must be one of {', '.join(sorted(_ROLES))}"
        if not any(m["role"] == "assistant" and m["content"].strip() for m in messages):
            return "a chat example needs an assistant message to learn from"
    elif "prompt" in example or "completion" in example:
        for key in ("prompt", "completion"):
            if not isinstance(example.get(key), str) or not example[key].strip():
                return f'"{key}" must be a non-empty string'
    elif "text" in example:
        if not isinstance(example["text"], str) or not example["text"].strip():
            return '"text" must be a non-empty string'
    else:
        return 'an example needs "messages", "prompt" and "completion", or "text"'
    length = _text_length(example)
    if length > max_chars:
        return f"example is too long ({length} characters; the limit is {max_chars})"
    return None


def read_examples(lines: Iterable[str], max_chars: int) -> list[dict[str, Any]]:
    """The examples of a JSONL text; blank lines are skipped. Raises DatasetError naming the first bad line."""
    out: list[dict[str, Any]] = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            example = json.loads(line)
        except ValueError as exc:
            raise DatasetError(number, f"not valid JSON ({exc.args[0] if exc.args else exc})") from None
        problem = check_example(example, max_chars)
        if problem is not None:
            raise DatasetError(number, problem)
        out.append(example)
    if not out:
        raise DatasetError(0, "the dataset has no examples")
    return out


def split_examples(
    examples: Sequence[dict[str, Any]], eval_fraction: float, seed: int, max_examples: int = 0
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(train, held-out): a seeded shuffle, `eval_fraction` of it held out (at least one example when there are
    two or more), the training part capped at `max_examples` (0: no cap)."""
    shuffled = list(examples)
    random.Random(seed).shuffle(shuffled)
    held = 0
    if eval_fraction > 0 and len(shuffled) >= 2:
        held = min(len(shuffled) - 1, max(1, round(len(shuffled) * eval_fraction)))
    train, held_out = shuffled[held:], shuffled[:held]
    if max_examples > 0:
        train = train[:max_examples]
    return train, held_out
