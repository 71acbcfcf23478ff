"""ChatService: proto ⇄ domain around ChatEngine; streaming, unary and batch share one request conversion."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

from forge.chat.v1 import chat_pb2
from forge.type.v1 import usage_pb2

from ..domain import ChatEngine, ChatParams, FieldViolation, ForgeError, InvalidArgument, Route, TextDelta, Usage
from ..domain.ledger import UsageRecord, UsageSink, UsageStatus, client_ip_from_peer
from .chat_convert import FINISH, chat_params, completion_message, served_model, usage_message
from .context import CallContext, add_trailing, metadata_value, request_id

__all__ = ["ChatServicer"]

MAX_BATCH = 32


class _Outcome:
    """What one call ended as; filled in as it runs, recorded once in `finally`."""

    __slots__ = ("model", "provider", "reason", "response", "status", "ttft_ms", "usage")

    def __init__(self, model: str) -> None:
        self.model = model
        self.provider: str | None = None
        self.status = UsageStatus.FAILED
        self.reason = "INTERNAL"
        self.usage = Usage()
        self.ttft_ms: int | None = None
        self.response: str | None = None

    def ended(self, exc: BaseException) -> None:
        if isinstance(exc, ForgeError):
            self.status, self.reason = UsageStatus.FAILED, exc.reason
        elif isinstance(exc, (asyncio.CancelledError, GeneratorExit)):
            # The client left (or the deadline hit): the row keeps the usage produced so far.
            self.status, self.reason = UsageStatus.CANCELLED, "CANCELLED"


class ChatServicer:
    def __init__(self, engine: ChatEngine, ledger: UsageSink | None = None, log_content: bool = False) -> None:
        self._engine = engine
        self._ledger = ledger
        self._log_content = log_content

    def _record(
        self, rid: str, context: CallContext, params: ChatParams, out: _Outcome, started: float, created: float
    ) -> None:
        if self._ledger is None:
            return
        prompt = (
            next((m.content for m in reversed(params.messages) if m.role == "user"), "") if self._log_content else None
        )
        self._ledger.record(
            UsageRecord(
                request_id=rid,
                model=out.model,
                status=out.status,
                provider=out.provider,
                prompt_tokens=out.usage.prompt_tokens,
                completion_tokens=out.usage.completion_tokens,
                cost_usd=out.usage.cost_usd,
                latency_ms=int((time.perf_counter() - started) * 1000),
                ttft_ms=out.ttft_ms,
                error_reason=None if out.status is UsageStatus.COMPLETED else out.reason,
                client_ip=client_ip_from_peer(metadata_value(context, "x-forge-client-ip") or context.peer()),
                prompt_text=prompt,
                response_text=out.response if self._log_content else None,
                created_at=created,
                # user_id / api_key_id join with auth (issue 5).
            )
        )

    async def CreateChatCompletion(
        self, request: chat_pb2.CreateChatCompletionRequest, context: CallContext
    ) -> chat_pb2.ChatCompletion:
        started, created = time.perf_counter(), time.time()
        params = chat_params(request.chat)
        out = _Outcome(params.model)
        try:
            result = await self._engine.complete(params, context.time_remaining())
            out.model, out.provider, out.usage = served_model(result.route), result.provider, result.usage
            out.status, out.response = UsageStatus.COMPLETED, result.completion.text
        except BaseException as exc:
            out.ended(exc)
            raise
        finally:
            self._record(request_id.get(), context, params, out, started, created)
        add_trailing(
            ("x-forge-provider", result.provider),
            ("x-forge-model", served_model(result.route)),
            ("x-forge-upstream-ms", f"{result.upstream_ms:.1f}"),
        )
        return completion_message(result, request_id.get())

    async def StreamChatCompletion(
        self, request: chat_pb2.StreamChatCompletionRequest, context: CallContext
    ) -> AsyncIterator[chat_pb2.ChatEvent]:
        started, created = time.perf_counter(), time.time()
        rid = request_id.get()
        params = chat_params(request.chat)
        out = _Outcome(params.model)
        try:
            stream = await self._engine.open_stream(params, context.time_remaining())
        except BaseException as exc:  # validation or routing failed: nothing was generated
            out.ended(exc)
            self._record(rid, context, params, out, started, created)
            raise
        out.model, out.provider = served_model(stream.route), stream.provider
        parts: list[str] = []
        Event, Delta = chat_pb2.ChatEvent, chat_pb2.ContentDelta
        seq = 0
        role = "assistant"
        try:
            try:
                async for ev in stream.events():
                    if out.ttft_ms is None:
                        out.ttft_ms = int((time.perf_counter() - started) * 1000)
                    running = usage_pb2.Usage(
                        completion_tokens=stream.usage.completion_tokens,
                        total_tokens=stream.usage.completion_tokens,
                    )
                    if isinstance(ev, TextDelta):
                        parts.append(ev.text)
                        yield Event(sequence=seq, delta=Delta(content=ev.text, role=role), running_usage=running)
                        role = ""
                    else:
                        yield Event(
                            sequence=seq,
                            tool_call=chat_pb2.ToolCallDelta(
                                index=ev.index, id=ev.id, name=ev.name, arguments=ev.arguments
                            ),
                            running_usage=running,
                        )
                    seq += 1
            except ForgeError as err:
                if seq == 0:
                    raise  # nothing sent yet: a plain error status says it all
                yield Event(
                    sequence=seq,
                    error=chat_pb2.StreamError(code=err.code.value, reason=err.reason, message=err.message),
                )
                yield Event(
                    sequence=seq + 1,
                    finish=self._finish(stream.provider, stream.route, chat_pb2.FINISH_REASON_ERROR),
                )
                raise
            usage = usage_message(stream.usage)
            yield Event(sequence=seq, usage=usage, running_usage=usage)
            assert stream.finish is not None
            yield Event(
                sequence=seq + 1,
                finish=self._finish(stream.provider, stream.route, FINISH[stream.finish]),
                running_usage=usage,
            )
            out.status = UsageStatus.COMPLETED
        except BaseException as exc:
            out.ended(exc)
            raise
        finally:
            # Final usage when the stream finished; what was produced so far (prompt counted too) when not.
            out.usage = stream.usage if stream.finish is not None else stream.partial_usage()
            out.response = "".join(parts)
            self._record(rid, context, params, out, started, created)

    def _finish(self, provider: str, route: Route, reason: chat_pb2.FinishReason.ValueType) -> chat_pb2.Finish:
        return chat_pb2.Finish(reason=reason, model=served_model(route), provider=provider, id=request_id.get())

    async def BatchCreateChatCompletions(
        self, request: chat_pb2.BatchCreateChatCompletionsRequest, context: CallContext
    ) -> chat_pb2.BatchCreateChatCompletionsResponse:
        if not request.requests:
            raise InvalidArgument([FieldViolation("requests", "at least one request is required")])
        if len(request.requests) > MAX_BATCH:
            raise InvalidArgument([FieldViolation("requests", f"at most {MAX_BATCH} requests per batch")])
        rid = request_id.get()
        timeout = context.time_remaining()

        async def one(i: int, chat: chat_pb2.ChatRequest) -> chat_pb2.BatchResult:
            started, created = time.perf_counter(), time.time()
            params = chat_params(chat)
            out = _Outcome(params.model)
            try:
                result = await self._engine.complete(params, timeout)
                out.model, out.provider, out.usage = served_model(result.route), result.provider, result.usage
                out.status, out.response = UsageStatus.COMPLETED, result.completion.text
            except ForgeError as err:
                out.ended(err)
                error = chat_pb2.StreamError(code=err.code.value, reason=err.reason, message=err.message)
                return chat_pb2.BatchResult(index=i, error=error)
            except BaseException as exc:
                out.ended(exc)
                raise
            finally:
                self._record(f"{rid}-{i}", context, params, out, started, created)
            return chat_pb2.BatchResult(index=i, completion=completion_message(result, f"{rid}-{i}"))

        results = await asyncio.gather(*(one(i, c) for i, c in enumerate(request.requests)))
        return chat_pb2.BatchCreateChatCompletionsResponse(results=results)
