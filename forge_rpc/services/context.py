"""CallContext: how servicers and the policy pipeline see a call, whatever carried it.

`grpc.aio.ServicerContext` satisfies this protocol as it is; the edge's in-process invoker passes a small local
context that implements the same methods, so both transports run the very same wrapped servicer methods.
"""

from __future__ import annotations

import contextvars
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NoReturn, Protocol

import grpc

from ..domain.identity import ANONYMOUS, Principal

__all__ = [
    "CallContext",
    "CallUsage",
    "add_response_header",
    "add_trailing",
    "call_usage",
    "caller_peer",
    "metadata_value",
    "peer_of",
    "principal",
    "request_id",
    "response_headers",
    "trailing",
]

#: The id of the call being served (from `x-request-id` metadata, else generated), for logs and records.
request_id: contextvars.ContextVar[str] = contextvars.ContextVar("forge_request_id", default="")
#: Trailing metadata a servicer adds (which route answered, upstream time); the pipeline sends it with the
#: request id when the call ends, so both transports see it.
trailing: contextvars.ContextVar[list[tuple[str, str]]] = contextvars.ContextVar("forge_trailing")


def add_trailing(*pairs: tuple[str, str]) -> None:
    trailing.get().extend(pairs)


#: Who is calling; set by the pipeline's auth policy before the servicer runs.
principal: contextvars.ContextVar[Principal] = contextvars.ContextVar("forge_principal", default=ANONYMOUS)
#: Metadata that must reach the client before the first message (rate-limit headers): the pipeline sends it as
#: gRPC initial metadata, and the edge turns it into HTTP headers before the first byte.
response_headers: contextvars.ContextVar[list[tuple[str, str]]] = contextvars.ContextVar("forge_response_headers")


def add_response_header(*pairs: tuple[str, str]) -> None:
    response_headers.get().extend(pairs)


@dataclass(slots=True)
class CallUsage:
    """What a generation actually consumed, filled in by the servicer so policies can settle reservations."""

    model: str = ""
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


#: Set by the pipeline to a fresh CallUsage per call; servicers that generate fill it in.
call_usage: contextvars.ContextVar[CallUsage] = contextvars.ContextVar("forge_call_usage")


Metadata = Sequence[tuple[str, str | bytes]]


class CallContext(Protocol):
    def invocation_metadata(self) -> Any: ...

    def time_remaining(self) -> float | None: ...

    async def abort(self, code: grpc.StatusCode, details: str = "", trailing_metadata: Metadata = ()) -> NoReturn: ...

    def set_trailing_metadata(self, trailing_metadata: Metadata) -> None: ...

    def peer(self) -> str: ...

    def cancelled(self) -> bool: ...

    async def send_initial_metadata(self, initial_metadata: Metadata) -> None: ...


#: The caller's address, read by the pipeline as the call begins.
caller_peer: contextvars.ContextVar[str | None] = contextvars.ContextVar("forge_caller_peer", default=None)


def peer_of(context: CallContext) -> str:
    """The caller's address. Read once, when the call begins: grpcio's `peer()` on a call its client has cancelled
    reads freed memory and crashes the process (1.85, reproduced), and a cancel can land at any await."""
    peer = caller_peer.get()
    return context.peer() if peer is None else peer


def metadata_value(context: CallContext, key: str) -> str | None:
    for item in context.invocation_metadata() or ():
        k, v = item[0], item[1]
        if k == key:
            return v.decode() if isinstance(v, bytes) else v
    return None
