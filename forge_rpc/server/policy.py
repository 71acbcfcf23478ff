"""The policy interface of the pipeline: auth, rate limits and budgets each implement `Policy`.

A policy sees every call before its servicer runs (`admit`), may refuse it with a `ForgeError` (UNAUTHENTICATED,
PERMISSION_DENIED, RESOURCE_EXHAUSTED…), and may return a `Release` the pipeline awaits once the call ended —
however it ended — to settle what it reserved (the real token count is in `call_usage` by then).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from ..services.context import CallContext

__all__ = ["CallInfo", "Policy", "Release"]

Release = Callable[[str], Awaitable[None]]
"""Called with the call's final status code name ("OK", "CANCELLED", "RESOURCE_EXHAUSTED"…)."""


@dataclass(frozen=True, slots=True)
class CallInfo:
    """The RPC being called, as policies need it."""

    full_name: str
    """`/forge.chat.v1.ChatService/StreamChatCompletion`."""
    service: str
    """`forge.chat.v1.ChatService`."""
    method: str
    """`StreamChatCompletion`."""
    server_streaming: bool
    client_streaming: bool


class Policy(Protocol):
    async def admit(self, call: CallInfo, request: Any, context: CallContext) -> Release | None:
        """Raise a ForgeError to refuse the call; sets context variables (principal…) for the servicer."""
        ...
