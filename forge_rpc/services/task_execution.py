"""`TaskExecutor`: runs a queued task — a chat, a batch of chats, or a RAG query — as its creator, then stores the
RPC's response as the task's result.

The creator's rights were kept with the row when the task was queued (job_owner.caller_json); they are checked
again here against what the wrapped RPC needs (the "chat" or "rag" scope, the key's allowed models), and the
usage ledger gets exactly one row per generation under `<task_id>/<attempt>` — an attempt cut short by a
shutdown keeps its own cancelled row, and the retry writes another.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, NoReturn

import grpc
from forge.chat.v1 import chat_pb2
from forge.rag.v1 import rag_pb2
from google.protobuf import json_format
from google.protobuf.message import Message

from ..domain import ChatEngine, FieldViolation, ForgeError, InvalidArgument, PermissionDenied, Usage, validate_chat
from ..domain.identity import Principal
from ..domain.jobs import EventType, Failure, JobEvent, JobState
from ..domain.ledger import Operation, UsageSink
from .chat_convert import chat_params, completion_message, served_model
from .context import CallContext, CallUsage, call_usage, principal, request_id, trailing
from .job_owner import principal_from_json
from .job_worker import Hold
from .usage_recording import Generation

__all__ = ["TASK_KINDS", "RagQuery", "TaskExecutor", "authorize", "parse_payload", "task_models"]

RagQuery = Callable[[rag_pb2.QueryRequest, CallContext], Awaitable[rag_pb2.QueryResponse]]

MAX_BATCH = 32

#: kind → (request message, the scope an API key needs for it).
TASK_KINDS: dict[str, tuple[type[Message], str]] = {
    "chat": (chat_pb2.ChatRequest, "chat"),
    "chat_batch": (chat_pb2.BatchCreateChatCompletionsRequest, "chat"),
    "rag_query": (rag_pb2.QueryRequest, "rag"),
}


class _Background:
    """The CallContext of work no client is waiting on: no metadata, no deadline, no peer."""

    def invocation_metadata(self) -> Any:
        return ()

    def time_remaining(self) -> float | None:
        return None

    async def abort(self, code: grpc.StatusCode, details: str = "", trailing_metadata: Any = ()) -> NoReturn:
        raise RuntimeError(f"a background task cannot abort a call ({code.name}: {details})")

    def set_trailing_metadata(self, trailing_metadata: Any) -> None:
        pass

    def peer(self) -> str:
        return ""

    def cancelled(self) -> bool:
        return False

    async def send_initial_metadata(self, initial_metadata: Any) -> None:
        pass


def parse_payload(kind: str, payload: dict[str, Any], kinds: Sequence[str]) -> Message:
    """The task's request message; INVALID_ARGUMENT for an unknown kind or a payload that does not fit it."""
    if kind not in kinds:
        raise InvalidArgument(
            [FieldViolation("kind", f"unknown task kind {kind!r}; this server runs {', '.join(kinds)}")]
        )
    message = TASK_KINDS[kind][0]()
    try:
        json_format.ParseDict(payload, message)
    except json_format.ParseError as exc:
        raise InvalidArgument([FieldViolation("payload", str(exc))]) from None
    if isinstance(message, chat_pb2.ChatRequest):
        validate_chat(chat_params(message))
    elif isinstance(message, chat_pb2.BatchCreateChatCompletionsRequest):
        if not message.requests or len(message.requests) > MAX_BATCH:
            raise InvalidArgument([FieldViolation("payload.requests", f"give 1 to {MAX_BATCH} chat requests")])
        for chat in message.requests:
            validate_chat(chat_params(chat))
    elif isinstance(message, rag_pb2.QueryRequest) and not message.query.strip():
        raise InvalidArgument([FieldViolation("payload.query", "required")])
    return message


@dataclass(slots=True)
class _Outcome:
    result: dict[str, Any]
    usage: Usage
    model: str = ""
    service: str = ""


def _usage_json(u: Usage) -> dict[str, Any]:
    return {
        "prompt_tokens": u.prompt_tokens,
        "completion_tokens": u.completion_tokens,
        "total_tokens": u.total_tokens,
        "cost_usd": u.cost_usd,
        "estimated": u.estimated,
    }


def task_models(message: Message) -> list[str]:
    """The models a task's request names ('' where it leaves the choice to the server)."""
    if isinstance(message, chat_pb2.BatchCreateChatCompletionsRequest):
        return [chat.model for chat in message.requests]
    return [str(getattr(message, "model", ""))]


def authorize(who: Principal, scope: str, model: str) -> None:
    if not who.has_scope(scope):
        raise PermissionDenied(f"the API key that queued this task lacks the {scope!r} scope", "SCOPE_MISSING")
    if model and not who.may_use_model(model):
        raise PermissionDenied(f"the API key that queued this task may not use model {model!r}", "MODEL_NOT_ALLOWED")


class TaskExecutor:
    def __init__(
        self, engine: ChatEngine, ledger: UsageSink | None, *, timeout_s: float, rag_query: RagQuery | None = None
    ) -> None:
        self._engine = engine
        self._ledger = ledger
        self._timeout_s = timeout_s
        self._rag = rag_query

    @property
    def kinds(self) -> list[str]:
        return [k for k in TASK_KINDS if k != "rag_query" or self._rag is not None]

    async def __call__(self, hold: Hold) -> None:
        work = asyncio.create_task(self._run(hold))
        started = time.monotonic()
        try:
            while not work.done():
                changed = asyncio.create_task(hold.changed())
                await asyncio.wait([work, changed], return_when=asyncio.FIRST_COMPLETED)
                changed.cancel()
                if (hold.lost or hold.controls.cancel or hold.shutdown) and not work.done():
                    work.cancel()  # closes the upstream request
                    await asyncio.wait([work])
        finally:
            if not work.done():
                work.cancel()
                await asyncio.wait([work])
        await self._end(hold, work, time.monotonic() - started)

    async def _end(self, hold: Hold, work: asyncio.Task[_Outcome], seconds: float) -> None:
        claim, leases = hold.claim, hold.leases
        if hold.lost:
            return
        if hold.controls.cancel:
            await leases.finish(claim, JobState.CANCELLED, [], message="cancelled")
            return
        if work.cancelled():
            await leases.finish(claim, JobState.QUEUED, [], message="released: forge stopped", released=True)
            return
        exc = work.exception()
        if isinstance(exc, ForgeError):
            failure = Failure(exc.reason, exc.message, exc.code.value, dict(exc.metadata))
            event = JobEvent(EventType.ERROR, JobState.FAILED, exc.message)
            await leases.finish(claim, JobState.FAILED, [event], message=exc.message, error=failure)
            return
        if exc is not None:
            raise exc
        out = work.result()
        status = {**claim.job.status, "model_used": out.model, "service_used": out.service, "execution_time": seconds}
        await leases.finish(
            claim, JobState.COMPLETED, [], message="completed", progress=100.0, status=status, result=out.result,
            usage=_usage_json(out.usage),
        )  # fmt: skip

    async def _run(self, hold: Hold) -> _Outcome:
        job = hold.claim.job
        who = principal_from_json(hold.claim.principal)
        # This task has its own copy of the context: what the servicers and the ledger read about "the call".
        principal.set(who)
        call_usage.set(CallUsage())
        trailing.set([])
        rid = f"{job.id}/{hold.claim.attempt}"
        request_id.set(rid)
        message = parse_payload(job.kind, job.spec, self.kinds)
        if isinstance(message, chat_pb2.ChatRequest):
            return await self._chat(who, message, rid)
        if isinstance(message, chat_pb2.BatchCreateChatCompletionsRequest):
            return await self._batch(hold, who, message, rid)
        assert isinstance(message, rag_pb2.QueryRequest)
        assert self._rag is not None
        authorize(who, "rag", message.model)
        reply = await self._rag(message, _Background())
        usage = Usage(reply.usage.prompt_tokens, reply.usage.completion_tokens, reply.usage.cost_usd)
        return _Outcome(json_format.MessageToDict(reply, preserving_proto_field_name=True), usage, message.model)

    async def _chat(self, who: Principal, chat: chat_pb2.ChatRequest, rid: str) -> _Outcome:
        params = chat_params(chat)
        authorize(who, "chat", params.model)
        request_id.set(rid)
        with Generation(self._ledger, Operation.CHAT, params.model, _Background()) as gen:
            result = await self._engine.complete(params, self._timeout_s)
            gen.completed(served_model(result.route), result.provider, result.usage)
        reply = completion_message(result, rid)
        result_json = json_format.MessageToDict(reply, preserving_proto_field_name=True)
        return _Outcome(result_json, result.usage, served_model(result.route), result.provider)

    async def _batch(
        self, hold: Hold, who: Principal, batch: chat_pb2.BatchCreateChatCompletionsRequest, rid: str
    ) -> _Outcome:
        n, done = len(batch.requests), 0
        total = Usage()

        async def one(i: int, chat: chat_pb2.ChatRequest) -> chat_pb2.BatchResult:
            nonlocal done
            try:
                out = await self._chat(who, chat, f"{rid}-{i}")
                total.prompt_tokens += out.usage.prompt_tokens
                total.completion_tokens += out.usage.completion_tokens
                total.cost_usd += out.usage.cost_usd
                completion = chat_pb2.ChatCompletion()
                json_format.ParseDict(out.result, completion)
                result = chat_pb2.BatchResult(index=i, completion=completion)
            except ForgeError as err:
                error = chat_pb2.StreamError(code=err.code.value, reason=err.reason, message=err.message)
                result = chat_pb2.BatchResult(index=i, error=error)
            done += 1
            progress = 100.0 * done / n
            event = JobEvent(EventType.PROGRESS, JobState.RUNNING, f"{done} of {n} requests done", progress)
            await hold.leases.record(hold.claim, [event], progress=progress)
            return result

        results = await asyncio.gather(*(one(i, c) for i, c in enumerate(batch.requests)))
        reply = chat_pb2.BatchCreateChatCompletionsResponse(results=results)
        return _Outcome(json_format.MessageToDict(reply, preserving_proto_field_name=True), total)
