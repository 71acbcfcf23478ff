"""ChatService: proto ⇄ domain around ChatEngine; streaming, unary and batch share one request conversion.

Every call writes one ledger row through `Generation` — completed, cancelled with its partial usage, or failed —
with the caller's user and key ids, and fills `call_usage` so the limits policy settles its reservation to the
real tokens and cost. Deterministic requests (temperature 0 or a seed) go through the response cache when it is
on: a hit is answered without the upstream (streamed requests as a stream of the stored deltas) and still writes
its ledger row (provider `cache`, the answer's tokens, cost 0); a miss stores the finished answer.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from forge.chat.v1 import chat_pb2
from forge.type.v1 import usage_pb2

from ..domain import (
    ChatEngine,
    ChatParams,
    FieldViolation,
    ForgeError,
    InvalidArgument,
    Route,
    TextDelta,
    ToolCallDelta,
)
from ..domain.ledger import Operation, UsageSink, UsageStatus
from ..domain.response_cache import ResponseCache
from .chat_convert import FINISH, chat_params, completion_message, served_model, usage_message
from .chat_replay import CACHE_PROVIDER, answer_of_result, answer_of_stream, cached_completion, hit_usage, replay
from .context import CallContext, add_response_header, add_trailing, request_id
from .usage_recording import Generation

__all__ = ["ChatServicer"]

MAX_BATCH = 32

Trailers = list[tuple[str, str]]


class ChatServicer:
    def __init__(
        self,
        engine: ChatEngine,
        ledger: UsageSink | None = None,
        log_content: bool = False,
        cache: ResponseCache | None = None,
    ) -> None:
        self._engine = engine
        self._ledger = ledger
        self._log_content = log_content
        self._cache = cache

    def _generation(self, params: ChatParams, context: CallContext) -> Generation:
        gen = Generation(self._ledger, Operation.CHAT, params.model, context)
        if self._log_content:
            gen.prompt_text = next((m.content for m in reversed(params.messages) if m.role == "user"), "")
        return gen

    def _cache_key(self, params: ChatParams) -> str | None:
        return self._cache.key_for(params) if self._cache is not None else None

    async def _complete(
        self, params: ChatParams, timeout: float | None, context: CallContext
    ) -> tuple[chat_pb2.ChatCompletion, Trailers]:
        """One unary answer — from the cache or the engine — with its ledger row."""
        rid = request_id.get()
        key = self._cache_key(params)
        with self._generation(params, context) as gen:
            if key is not None and self._cache is not None and (hit := await self._cache.get(key)) is not None:
                gen.completed(hit.model, CACHE_PROVIDER, hit_usage(hit))
                if self._log_content:
                    gen.response_text = hit.text
                trailers = [
                    ("x-forge-provider", CACHE_PROVIDER),
                    ("x-forge-model", hit.model),
                    ("x-forge-cache", "hit"),
                ]
                return cached_completion(hit, rid), trailers
            result = await self._engine.complete(params, timeout)
            gen.completed(served_model(result.route), result.provider, result.usage)
            if self._log_content:
                gen.response_text = result.completion.text
        if key is not None and self._cache is not None:
            await self._cache.put(key, answer_of_result(result))
        trailers = [
            ("x-forge-provider", result.provider),
            ("x-forge-model", served_model(result.route)),
            ("x-forge-upstream-ms", f"{result.upstream_ms:.1f}"),
            ("x-forge-deployment", result.deployment_id),
            ("x-forge-attempts", str(result.attempts)),
        ]
        if key is not None:
            trailers.append(("x-forge-cache", "miss"))
        return completion_message(result, rid), trailers

    async def CreateChatCompletion(
        self, request: chat_pb2.CreateChatCompletionRequest, context: CallContext
    ) -> chat_pb2.ChatCompletion:
        reply, trailers = await self._complete(chat_params(request.chat), context.time_remaining(), context)
        add_trailing(*trailers)
        return reply

    async def StreamChatCompletion(
        self, request: chat_pb2.StreamChatCompletionRequest, context: CallContext
    ) -> AsyncIterator[chat_pb2.ChatEvent]:
        rid = request_id.get()
        params = chat_params(request.chat)
        key = self._cache_key(params)
        with self._generation(params, context) as gen:
            if key is not None and self._cache is not None and (hit := await self._cache.get(key)) is not None:
                gen.first_token()
                for event in replay(hit, rid):
                    yield event
                gen.completed(hit.model, CACHE_PROVIDER, hit_usage(hit))
                if self._log_content:
                    gen.response_text = hit.text
                return
            # Validation and routing fail here, before any byte: a plain error status (and a failed row).
            stream = await self._engine.open_stream(params, context.time_remaining())
            gen.model, gen.provider = served_model(stream.route), stream.provider
            served = (("x-forge-deployment", stream.deployment_id), ("x-forge-attempts", str(stream.attempts)))
            # In the initial metadata (the HTTP headers on the edge) when the first event comes within the
            # pipeline's prefill grace, as it nearly always does; in the trailers always.
            add_response_header(*served)
            add_trailing(*served)
            pieces: list[str | ToolCallDelta] = []
            Event, Delta = chat_pb2.ChatEvent, chat_pb2.ContentDelta
            seq = 0
            role = "assistant"
            try:
                try:
                    async for ev in stream.events():
                        if gen.ttft_ms is None:
                            gen.first_token()
                        running = usage_pb2.Usage(
                            completion_tokens=stream.usage.completion_tokens,
                            total_tokens=stream.usage.completion_tokens,
                        )
                        if isinstance(ev, TextDelta):
                            pieces.append(ev.text)
                            yield Event(sequence=seq, delta=Delta(content=ev.text, role=role), running_usage=running)
                            role = ""
                        else:
                            pieces.append(ev)
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
                gen.completed(gen.model, stream.provider, stream.usage)
            finally:
                if gen.status is not UsageStatus.COMPLETED:
                    # What was produced so far (prompt counted too): a cancelled or failed stream's bill.
                    gen.usage = stream.usage if stream.finish is not None else stream.partial_usage()
                if self._log_content:
                    gen.response_text = "".join(p for p in pieces if isinstance(p, str))
        # After the finish event: the client has its answer; storing it costs the stream nothing visible.
        if key is not None and self._cache is not None:
            await self._cache.put(key, answer_of_stream(stream, pieces))

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
            # Each item runs in its own task (gather), so this id — its ledger row's and its reply's — is its own.
            request_id.set(f"{rid}-{i}")
            try:
                reply, _ = await self._complete(chat_params(chat), timeout, context)
            except ForgeError as err:
                error = chat_pb2.StreamError(code=err.code.value, reason=err.reason, message=err.message)
                return chat_pb2.BatchResult(index=i, error=error)
            return chat_pb2.BatchResult(index=i, completion=reply)

        results = await asyncio.gather(*(one(i, c) for i, c in enumerate(request.requests)))
        return chat_pb2.BatchCreateChatCompletionsResponse(results=results)
