"""The /ws wire format: client frames parsed into typed values, server frames encoded as JSON text.

Client: `{"type": "subscribe", "id", "topic", "params"}`, `{"type": "unsubscribe", "id"}`, `{"type": "ping"}`.
Server: `{"type": "event", "id", "data"}`, `{"type": "error", "id", "error": {"detail", "code"}}`,
`{"type": "complete", "id"}`, `{"type": "pong"}`.

An error frame carrying a subscription id means that subscription is over (or never started). Frame-level
errors (malformed JSON, unknown type, unknown topic, an id already in use) carry `id: null`: the id of a
duplicate belongs to a live subscription, and an error under it would read as that subscription's end. Params
that do not fit the topic's request are that subscription's error, as the core's INVALID_ARGUMENT would be.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final

import orjson

__all__ = [
    "PONG",
    "FrameError",
    "Ping",
    "Subscribe",
    "Unsubscribe",
    "complete_frame",
    "error_frame",
    "event_frame",
    "parse_frame",
]

MAX_ID_CHARS: Final = 256
PONG: Final = b'{"type":"pong"}'


@dataclass(frozen=True, slots=True)
class Subscribe:
    id: str
    topic: str
    params: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Unsubscribe:
    id: str


@dataclass(frozen=True, slots=True)
class Ping:
    pass


ClientFrame = Subscribe | Unsubscribe | Ping


class FrameError(ValueError):
    """A client frame the edge cannot act on; answered with an error frame, never by closing the socket."""

    def __init__(self, detail: str, code: str = "INVALID_ARGUMENT") -> None:
        super().__init__(detail)
        self.detail, self.code = detail, code


def _client_id(frame: dict[str, Any]) -> str:
    value = frame.get("id")
    if not isinstance(value, str) or not value:
        raise FrameError(f"{frame.get('type')}: `id` must be a non-empty string")
    if len(value) > MAX_ID_CHARS:
        raise FrameError(f"{frame.get('type')}: `id` is longer than {MAX_ID_CHARS} characters")
    return value


def parse_frame(text: str) -> ClientFrame:
    # Seed 003 (Oxide) documents a bare `ping` text message; its clients keep working.
    if text.strip() == "ping":
        return Ping()
    try:
        frame = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise FrameError(f"frame is not valid JSON: {exc}") from None
    if not isinstance(frame, dict):
        raise FrameError("frame must be a JSON object")
    kind = frame.get("type")
    if kind == "ping":
        return Ping()
    if kind == "unsubscribe":
        return Unsubscribe(_client_id(frame))
    if kind == "subscribe":
        sub_id = _client_id(frame)
        topic = frame.get("topic")
        if not isinstance(topic, str) or not topic:
            raise FrameError(f"subscribe {sub_id!r}: `topic` must be a non-empty string")
        params = frame.get("params")
        if params is None:
            params = {}
        if not isinstance(params, dict):
            raise FrameError(f"subscribe {sub_id!r}: `params` must be a JSON object")
        return Subscribe(sub_id, topic, params)
    raise FrameError(f"unknown frame type {kind!r}; expected subscribe, unsubscribe or ping")


# Event frames are spliced around the payload instead of re-encoding it: the payload is serialized once by the
# hub and shared by every subscriber, whatever its size.
def event_frame(sub_id: str, data: bytes) -> bytes:
    return b'{"type":"event","id":' + orjson.dumps(sub_id) + b',"data":' + data + b"}"


def complete_frame(sub_id: str) -> bytes:
    return orjson.dumps({"type": "complete", "id": sub_id})


def error_frame(sub_id: str | None, detail: str, code: str) -> bytes:
    return orjson.dumps({"type": "error", "id": sub_id, "error": {"detail": detail, "code": code}})
