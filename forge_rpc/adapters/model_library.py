"""The Ollama model library forge can describe offline: the `ollama/…` entries of litellm's bundled model map
(context window, chat or completion, tool and vision support). ollama.com has no search API, and forge runs
without internet, so this is the catalogue `SearchModelLibrary` answers from; pulling any other name still works.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import orjson

from .accounting import litellm_dir

__all__ = ["LibraryEntry", "ollama_library"]


@dataclass(frozen=True, slots=True)
class LibraryEntry:
    name: str
    description: str
    tags: tuple[str, ...]


def _describe(name: str, row: dict[str, Any]) -> LibraryEntry:
    tags: list[str] = []
    mode = row.get("mode")
    if isinstance(mode, str):
        tags.append(mode)
    for flag, tag in (("supports_function_calling", "tools"), ("supports_vision", "vision")):
        if row.get(flag):
            tags.append(tag)
    if name.endswith("-cloud"):
        tags.append("cloud")
    context = row.get("max_input_tokens") or row.get("max_tokens")
    parts = [f"{mode} model" if isinstance(mode, str) else "model"]
    if isinstance(context, int):
        parts.append(f"{context // 1024}k context" if context >= 1024 else f"{context}-token context")
    if "tools" in tags:
        parts.append("tool calling")
    if "vision" in tags:
        parts.append("images")
    return LibraryEntry(name, ", ".join(parts), tuple(tags))


@functools.cache
def ollama_library() -> tuple[LibraryEntry, ...]:
    """Read once, sorted by name; empty when litellm's map is not installed."""
    root = litellm_dir()
    table = root / "model_prices_and_context_window_backup.json" if root else None
    if table is None or not table.exists():
        return ()
    data: dict[str, Any] = orjson.loads(table.read_bytes())
    entries = [
        _describe(key.removeprefix("ollama/"), row)
        for key, row in data.items()
        if key.startswith("ollama/") and isinstance(row, dict)
    ]
    return tuple(sorted(entries, key=lambda e: e.name))
