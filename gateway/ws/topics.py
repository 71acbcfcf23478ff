"""/ws topics: which server-streaming RPC backs each topic, and how a subscription's params become its request.

The table is data, not code per topic: params go through `json_format.ParseDict` into the RPC's request
message (so both field spellings work and unknown fields are refused), responses come out through
`MessageToDict(preserving_proto_field_name=True)`, as on the REST edge. A topic for a new streaming RPC is one row.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

import grpc
import orjson
from google.protobuf import json_format
from google.protobuf.message import Message

from ..errors import bad_request
from ..invoke import InvokeError, Invoker, MethodInfo, method_catalog
from .protocol import FrameError

__all__ = ["TOPICS", "Resolved", "StreamKey", "Topic", "check_topics", "event_payloads", "resolve"]


@dataclass(frozen=True, slots=True)
class Topic:
    name: str
    method: str
    """The server-streaming RPC behind it, `/package.Service/Method`."""


TOPICS: Final[Mapping[str, Topic]] = {
    t.name: t
    for t in (
        Topic("pull", "/forge.models.v1.ModelsService/PullModel"),
        Topic("service_status", "/forge.routing.v1.RoutingService/WatchServiceStatus"),
        Topic("metrics", "/forge.analytics.v1.AnalyticsService/WatchMetrics"),
        Topic("job", "/forge.training.v1.TrainingService/WatchJob"),
        Topic("task", "/forge.training.v1.TrainingService/WatchTask"),
    )
}

StreamKey = tuple[str, bytes]
"""(topic, the caller's 32-byte identity + the request's deterministic serialization): equal params in any
spelling or order share a stream, but only between sockets with the same credentials."""


@dataclass(frozen=True, slots=True)
class Resolved:
    key: StreamKey
    method: str
    request: Message


def check_topics(topics: Mapping[str, Topic] = TOPICS) -> None:
    """Fails start-up when a row names an RPC the contracts lack or one that is not server-streaming: a typo in
    the table should not wait for the first subscriber to surface."""
    catalog = method_catalog()
    for topic in topics.values():
        info = catalog.get(topic.method)
        if info is None or not info.server_streaming:
            raise ValueError(f"/ws topic {topic.name!r}: {topic.method} is not a server-streaming RPC of forge")


def resolve(
    name: str,
    params: Mapping[str, Any],
    methods: Mapping[str, MethodInfo],
    topics: Mapping[str, Topic] = TOPICS,
    identity: bytes = bytes(32),
) -> Resolved:
    """The request a subscription makes, keyed for the caller `identity` (credentials/Caller.identity). Raises
    FrameError for an unknown topic and InvokeError (as the core would answer) for params that do not fit the
    request message."""
    topic = topics.get(name)
    if topic is None:
        raise FrameError(f"unknown topic {name!r}; topics are {', '.join(sorted(topics))}", "NOT_FOUND")
    info = methods.get(topic.method)
    if info is None:
        raise InvokeError(grpc.StatusCode.UNIMPLEMENTED, f"{topic.method} is not served by this forge")
    request = info.request_type()
    try:
        json_format.ParseDict(dict(params), request)
    except json_format.ParseError as exc:
        raise bad_request(f"topic {name!r} params: {exc}", "params") from None
    return Resolved((name, identity + request.SerializeToString(deterministic=True)), topic.method, request)


async def event_payloads(
    invoker: Invoker, method: str, request: Message, metadata: Sequence[tuple[str, str]]
) -> AsyncGenerator[bytes, None]:
    """The stream's responses as the JSON of an event's `data`, serialized once for all subscribers.

    No deadline: a watch lasts as long as someone listens; unsubscribing cancels it."""
    stream = invoker.stream(method, request, metadata, timeout=None)
    try:
        async for message in stream:
            yield orjson.dumps(json_format.MessageToDict(message, preserving_proto_field_name=True))
    finally:
        # Closing here, not leaving it to the garbage collector, is what cancels the call and the upstream
        # request when the last subscriber leaves.
        closer = getattr(stream, "aclose", None)
        if closer is not None:
            await closer()
