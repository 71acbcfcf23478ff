"""The policy pipeline: every servicer method is wrapped once, at build time, and both transports (the gRPC
server and the edge's in-process invoker) call the wrapped methods.

Always: request id (from `x-request-id` or generated) and access log; the error boundary that turns domain
errors into `google.rpc.Status`. Then the configured `Policy` chain (authentication and access, rate limits and
budgets), in order, before the servicer runs; each policy's release runs after the call, however it ended.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any, NoReturn

from ..domain import ErrorCode, ForgeError
from ..domain.identity import LOCAL
from ..services.context import (
    CallContext,
    CallUsage,
    call_usage,
    caller_peer,
    metadata_value,
    peer_of,
    principal,
    request_id,
    response_headers,
    trailing,
)
from ..services.inflight import InFlight
from .errors import DETAILS_KEY, grpc_code, to_status
from .policy import CallInfo, Policy, Release

__all__ = ["StreamHandler", "UnaryHandler", "wrap_stream", "wrap_unary"]

access_log = logging.getLogger("forge.access")

PREFILL_HEADERS_S = 1.0
"""How long a stream's admission headers wait for its first message before they leave without it."""
log = logging.getLogger("forge.rpc")

UnaryHandler = Callable[[Any, CallContext], Awaitable[Any]]
StreamHandler = Callable[[Any, CallContext], AsyncIterator[Any]]


def _begin(context: CallContext) -> str:
    rid = metadata_value(context, "x-request-id") or uuid.uuid4().hex
    request_id.set(rid)
    caller_peer.set(context.peer())  # now, while the call is sure to be alive (see peer_of)
    trailing.set([("x-request-id", rid)])
    response_headers.set([])
    call_usage.set(CallUsage())
    principal.set(LOCAL)  # an auth policy replaces it; without one (auth off) the caller is the local operator
    return rid


async def _admit(policies: Sequence[Policy], call: CallInfo, request: Any, context: CallContext) -> list[Release]:
    releases: list[Release] = []
    try:
        for policy in policies:
            release = await policy.admit(call, request, context)
            if release is not None:
                releases.append(release)
    except BaseException:
        await _release(releases, "ABORTED")
        raise
    # A unary answer's headers leave now. A stream's wait for its first message (see _StreamHeaders): by then the
    # servicer knows more (which deployment answers), and the upstream request is not held up by a send.
    headers = response_headers.get()
    if headers and not call.server_streaming:
        await context.send_initial_metadata(tuple(headers))
    return releases


class _StreamHeaders:
    """A stream's initial metadata: sent just before its first message with whatever the policies and the servicer
    added by then, or — when admission added headers (rate limits) and no message came within PREFILL_HEADERS_S —
    on its own, so a client (the edge's heartbeat) is not left without them through a long prefill.

    A timer, not a task, until it fires: nearly every stream's first message comes well before it."""

    __slots__ = ("_context", "_headers", "_sending", "_timer", "sent")

    def __init__(self, context: CallContext, headers: list[tuple[str, str]]) -> None:
        self._context, self._headers = context, headers
        self.sent = False
        self._sending: asyncio.Task[None] | None = None
        self._timer = asyncio.get_running_loop().call_later(PREFILL_HEADERS_S, self._fire) if headers else None

    def _fire(self) -> None:
        self._timer = None
        if not self.sent:
            self.sent = True
            self._sending = asyncio.create_task(self._context.send_initial_metadata(tuple(self._headers)))

    async def flush(self) -> None:
        """Before the first message (or the end of a stream that had none)."""
        self.cancel()
        if self._sending is not None:
            await self._sending
        elif not self.sent:
            self.sent = True
            if self._headers:  # none: gRPC sends empty initial metadata with the message itself, no extra op
                await self._context.send_initial_metadata(tuple(self._headers))

    def cancel(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def close(self) -> None:
        self.cancel()
        if self._sending is not None and not self._sending.done():
            self._sending.cancel()


async def _release(releases: list[Release], code: str) -> None:
    for release in reversed(releases):
        try:
            await release(code)
        except Exception:
            log.exception("a policy's release failed (request %s)", request_id.get())


async def _fail(context: CallContext, err: ForgeError, rid: str) -> NoReturn:
    status = to_status(err, rid)
    await context.abort(
        grpc_code(err.code),
        err.message,
        trailing_metadata=((DETAILS_KEY, status.SerializeToString()), *trailing.get()),
    )


def _internal(method: str, exc: Exception, rid: str) -> ForgeError:
    log.error("unhandled error in %s (request %s)", method, rid, exc_info=exc)
    return ForgeError(f"internal error (request id {rid})", ErrorCode.INTERNAL, "INTERNAL")


def _log(method: str, rid: str, code: str, started: float, context: CallContext) -> None:
    if access_log.isEnabledFor(logging.INFO):
        ms = (time.perf_counter() - started) * 1000
        access_log.info("%s %s %.1fms rid=%s peer=%s", method, code, ms, rid, peer_of(context))


# Counted when no InFlight is given (tests that wrap a single method).
_UNCOUNTED = InFlight()


def wrap_unary(
    call: CallInfo, fn: UnaryHandler, policies: Sequence[Policy] = (), inflight: InFlight = _UNCOUNTED
) -> UnaryHandler:
    method = call.full_name

    async def handler(request: Any, context: CallContext) -> Any:
        rid = _begin(context)
        started = time.perf_counter()
        code = "OK"
        releases: list[Release] = []
        inflight.requests += 1
        try:
            if policies:
                releases = await _admit(policies, call, request, context)
            response = await fn(request, context)
        except ForgeError as err:
            code = err.code.name
            await _fail(context, err, rid)
        except asyncio.CancelledError:
            code = "CANCELLED"
            raise
        except Exception as exc:
            code = "INTERNAL"
            await _fail(context, _internal(method, exc, rid), rid)
        finally:
            inflight.requests -= 1
            if releases:
                await _release(releases, code)
            _log(method, rid, code, started, context)
        context.set_trailing_metadata(tuple(trailing.get()))
        return response

    return handler


def wrap_stream(
    call: CallInfo, fn: StreamHandler, policies: Sequence[Policy] = (), inflight: InFlight = _UNCOUNTED
) -> StreamHandler:
    method = call.full_name
    # Watch… subscriptions last as long as a dashboard is open: they are not "requests in flight".
    counted = 0 if call.method.startswith("Watch") else 1

    async def handler(request: Any, context: CallContext) -> AsyncIterator[Any]:
        rid = _begin(context)
        started = time.perf_counter()
        code = "OK"
        releases: list[Release] = []
        inflight.requests += counted
        inflight.streams += counted
        headers: _StreamHeaders | None = None
        try:
            if policies:
                releases = await _admit(policies, call, request, context)
            headers = _StreamHeaders(context, response_headers.get())
            async for message in fn(request, context):
                if not headers.sent:
                    await headers.flush()
                yield message
            if not headers.sent:
                await headers.flush()
            context.set_trailing_metadata(tuple(trailing.get()))
        except ForgeError as err:
            code = err.code.name
            await _fail(context, err, rid)
        except asyncio.CancelledError:
            code = "CANCELLED"
            raise
        except Exception as exc:
            code = "INTERNAL"
            await _fail(context, _internal(method, exc, rid), rid)
        finally:
            if headers is not None:
                headers.close()
            inflight.requests -= counted
            inflight.streams -= counted
            if releases:
                await _release(releases, code)
            _log(method, rid, code, started, context)

    return handler
