"""CachedAnswer ⇄ bytes, the one format both cache backends store (compact JSON via orjson)."""

from __future__ import annotations

import logging
from typing import Any

import orjson

from ...domain import FinishReason, ToolCallDelta
from ...domain.response_cache import CachedAnswer

__all__ = ["decode_answer", "encode_answer", "model_of_key"]

log = logging.getLogger("forge.cache")

_VERSION = 1


def encode_answer(answer: CachedAnswer) -> bytes:
    pieces: list[Any] = [p if isinstance(p, str) else [p.index, p.id, p.name, p.arguments] for p in answer.pieces]
    return orjson.dumps(
        {
            "v": _VERSION,
            "m": answer.model,
            "p": answer.provider,
            "f": answer.finish.value,
            "u": [answer.prompt_tokens, answer.completion_tokens],
            "c": answer.created_at,
            "x": pieces,
        }
    )


def decode_answer(data: bytes) -> CachedAnswer | None:
    """None for an entry this version cannot read (written by another release): it is treated as a miss."""
    try:
        raw = orjson.loads(data)
        if raw.get("v") != _VERSION:
            return None
        pieces = tuple(
            p if isinstance(p, str) else ToolCallDelta(int(p[0]), str(p[1]), str(p[2]), str(p[3])) for p in raw["x"]
        )
        return CachedAnswer(
            model=str(raw["m"]),
            provider=str(raw["p"]),
            finish=FinishReason(raw["f"]),
            pieces=pieces,
            prompt_tokens=int(raw["u"][0]),
            completion_tokens=int(raw["u"][1]),
            created_at=float(raw["c"]),
        )
    except (orjson.JSONDecodeError, KeyError, IndexError, TypeError, ValueError, AttributeError):
        log.warning("ignoring an unreadable cache entry")
        return None


def model_of_key(key: str) -> str:
    """`chat:<model>:<sha256>` → `<model>` (model names may hold ':' themselves, e.g. `llama3.2:1b`)."""
    _, _, rest = key.partition(":")
    return rest.rpartition(":")[0]
