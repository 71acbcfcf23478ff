"""ChatService: proto ⇄ domain around ChatEngine; streaming, unary and batch share one request conversion."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from forge.chat.v1 import chat_pb2
from forge.type.v1 import usage_pb2

from ..domain import ChatEngine, FieldViolation, ForgeError, InvalidArgument, Route, TextDelta
from .chat_convert import FINISH, chat_params, completion_message, served_model, usage_message
from .context import CallContext, add_trailing, request_id

__all__ = ["ChatServicer"]

MAX_BATCH = 32


class ChatServicer:
    def __init__(self, engine: ChatEngine) -> None:
        self._engine = engine

    async def CreateChatCompletion(
        self, request: chat_pb2.CreateChatCompletionRequest, context: CallContext
    ) -> chat_pb2.ChatCompletion:
        result = await self._engine.complete(chat_params(request.chat), context.time_remaining())
        add_trailing(
            ("x-forge-provider", result.provider),
            ("x-forge-model", served_model(result.route)),
            ("x-forge-upstream-ms", f"{result.upstream_ms:.1f}"),
        )
        return completion_message(result, request_id.get())

    async def StreamChatCompletion(
        self, request: chat_pb2.StreamChatCompletionRequest, context: CallContext
    ) -> AsyncIterator[chat_pb2.ChatEvent]:
        stream = await self._engine.open_stream(chat_params(request.chat), context.time_remaining())
        Event, Delta = chat_pb2.ChatEvent, chat_pb2.ContentDelta
        seq = 0
        role = "assistant"
        try:
            async for ev in stream.events():
                running = usage_pb2.Usage(
                    completion_tokens=stream.usage.completion_tokens,
                    total_tokens=stream.usage.completion_tokens,
                )
                if isinstance(ev, TextDelta):
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
            try:
                result = await self._engine.complete(chat_params(chat), timeout)
            except ForgeError as err:
                error = chat_pb2.StreamError(code=err.code.value, reason=err.reason, message=err.message)
                return chat_pb2.BatchResult(index=i, error=error)
            return chat_pb2.BatchResult(index=i, completion=completion_message(result, f"{rid}-{i}"))

        results = await asyncio.gather(*(one(i, c) for i, c in enumerate(request.requests)))
        return chat_pb2.BatchCreateChatCompletionsResponse(results=results)
