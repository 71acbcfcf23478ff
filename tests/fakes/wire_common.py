"""Helpers shared by every wire dialect: bodies, token text, usage, vectors."""

from __future__ import annotations

import hashlib
import math
import struct
from collections.abc import Iterable, Mapping
from dataclasses import replace
from typing import Any, Final

import orjson
from aiohttp import web

from .recorder import RequestRecord
from .scenario import Scenario
from .state import state_of

# Stand-in for one token's text while pre-encoding a chunk template; an
# invisible separator char so it cannot clash with anything a test sends.
SLOT: Final = "\u2063FAKE-SLOT\u2063"
_SLOT_JSON: Final = orjson.dumps(SLOT)


def split_template(encoded: bytes) -> tuple[bytes, bytes]:
    """Split an encoded chunk containing SLOT into (prefix, suffix).

    The quotes stay in prefix/suffix so a JSON-safe token piece can be
    inserted by plain concatenation.
    """
    prefix, suffix = encoded.split(_SLOT_JSON)
    return prefix + b'"', b'"' + suffix


# The tool-call arguments '{"x": 1}', split the way OpenAI streams them; the
# Anthropic wire streams the same fragments as input_json_delta.
TOOL_ARG_FRAGMENTS: Final = ('{"', "x", '":', " ", "1", "}")
TOOL_ARGUMENTS: Final = "".join(TOOL_ARG_FRAGMENTS)


def json_response(
    payload: object,
    status: int = 200,
    headers: Mapping[str, str] | None = None,
    content_type: str = "application/json",
) -> web.Response:
    # orjson rather than web.json_response: it is the fast path and emits
    # compact JSON like the real providers.
    return web.Response(body=orjson.dumps(payload), status=status, headers=headers, content_type=content_type)


async def read_object(request: web.Request, rec: RequestRecord) -> dict[str, Any] | None:
    """Parse the JSON body into ``rec.body``; None when it is not an object."""
    raw = await request.read()
    try:
        body = orjson.loads(raw) if raw else None
    except orjson.JSONDecodeError:
        rec.body = raw.decode("utf-8", "replace")
        return None
    rec.body = body
    return body if isinstance(body, dict) else None


def begin(request: web.Request, rec: RequestRecord, model: object, stream: bool) -> Scenario:
    """Fill the record's identity fields and parse the scenario.

    Raises ScenarioError (caller maps it to its dialect's 400); the record is
    filled first so even rejected requests are findable by model.
    """
    rec.stream = stream
    rec.model = model if isinstance(model, str) else None
    state = state_of(request)
    scenario = state.scenario(rec.model or "")
    rec.tag = scenario.tag
    if scenario.fail_times is not None:
        state.seen[rec.model or ""] += 1
        if state.seen[rec.model or ""] > scenario.fail_times:
            scenario = replace(scenario, fail=None)
    return scenario


def token_text(i: int) -> str:
    return f"tok{i} "


def token_pieces(n: int) -> list[bytes]:
    # Already JSON-string-safe bytes: "tokN " needs no escaping, so chunks can
    # be assembled by concatenation without calling the encoder per token.
    return [b"tok%d " % i for i in range(n)]


def content_text(n: int) -> str:
    return "".join(token_text(i) for i in range(n))


def count_words(contents: Iterable[object]) -> int:
    """Whitespace-separated words across message contents (minimum 1).

    Contents may be strings or OpenAI/Anthropic part lists (``[{"type":
    "text", "text": ...}]``); non-text parts are ignored.
    """
    words = 0
    for content in contents:
        if isinstance(content, str):
            words += len(content.split())
        elif isinstance(content, list):
            for part in content:
                if isinstance(part, dict) and isinstance(part.get("text"), str):
                    words += len(part["text"].split())
    return max(words, 1)


def message_contents(messages: object) -> list[object]:
    if not isinstance(messages, list):
        return []
    return [m.get("content") for m in messages if isinstance(m, dict)]


def embedding(text: str, dims: int) -> list[float]:
    """Deterministic unit vector from a hash of ``text``.

    Values are rounded through float32 so the JSON and base64 encodings of
    the same input decode to identical numbers.
    """
    raw = hashlib.shake_256(text.encode()).digest(4 * dims)
    ints = struct.unpack(f"<{dims}I", raw)
    vec = [i / 2_147_483_648.0 - 1.0 for i in ints]
    norm = math.sqrt(sum(v * v for v in vec)) or 1.0
    scaled = [v / norm for v in vec]
    return list(struct.unpack(f"<{dims}f", struct.pack(f"<{dims}f", *scaled)))


def pack_float32(vec: list[float]) -> bytes:
    return struct.pack(f"<{len(vec)}f", *vec)
