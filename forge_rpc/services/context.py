"""CallContext: how servicers and the policy pipeline see a call, whatever carried it.

`grpc.aio.ServicerContext` satisfies this protocol as it is; the edge's in-process invoker passes a small local
context that implements the same methods, so both transports run the very same wrapped servicer methods.
"""

from __future__ import annotations

import contextvars
from collections.abc import Sequence
from typing import Any, NoReturn, Protocol

import grpc

__all__ = ["CallContext", "add_trailing", "metadata_value", "request_id", "trailing"]

#: The id of the call being served (from `x-request-id` metadata, else generated), for logs and records.
request_id: contextvars.ContextVar[str] = contextvars.ContextVar("forge_request_id", default="")
#: Trailing metadata a servicer adds (which route answered, upstream time); the pipeline sends it with the
#: request id when the call ends, so both transports see it.
trailing: contextvars.ContextVar[list[tuple[str, str]]] = contextvars.ContextVar("forge_trailing")


def add_trailing(*pairs: tuple[str, str]) -> None:
    trailing.get().extend(pairs)


Metadata = Sequence[tuple[str, str | bytes]]


class CallContext(Protocol):
    def invocation_metadata(self) -> Any: ...

    def time_remaining(self) -> float | None: ...

    async def abort(self, code: grpc.StatusCode, details: str = "", trailing_metadata: Metadata = ()) -> NoReturn: ...

    def set_trailing_metadata(self, trailing_metadata: Metadata) -> None: ...

    def peer(self) -> str: ...

    def cancelled(self) -> bool: ...


def metadata_value(context: CallContext, key: str) -> str | None:
    for item in context.invocation_metadata() or ():
        k, v = item[0], item[1]
        if k == key:
            return v.decode() if isinstance(v, bytes) else v
    return None
