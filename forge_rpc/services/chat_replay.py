"""Cached chat answers ⇄ forge.chat.v1 messages: storing a finished generation, and answering from the cache —
unary as a ChatCompletion, streamed as the same sequence of events a live stream sends (its original deltas,
then usage, then finish).

A cache hit reports provider `cache` (in the reply, the finish event, the `x-forge-provider` trailer and its
ledger row), the token counts of the stored answer (what the caller receives), and cost 0: nothing was paid.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence

from forge.chat.v1 import chat_pb2
from forge.type.v1 import usage_pb2

from ..domain import ChatResult, ChatStream, ToolCallDelta, Usage
from ..domain.response_cache import CachedAnswer
from .chat_convert import FINISH, served_model, usage_message

__all__ = ["CACHE_PROVIDER", "answer_of_result", "answer_of_stream", "cached_completion", "hit_usage", "replay"]

CACHE_PROVIDER = "cache"


def answer_of_result(result: ChatResult) -> CachedAnswer:
    c = result.completion
    pieces: list[str | ToolCallDelta] = [c.text] if c.text else []
    pieces += [ToolCallDelta(i, t.id, t.name, t.arguments) for i, t in enumerate(c.tool_calls)]
    return CachedAnswer(
        model=served_model(result.route),
        provider=result.provider,
        finish=c.finish,
        pieces=tuple(pieces),
        prompt_tokens=result.usage.prompt_tokens,
        completion_tokens=result.usage.completion_tokens,
        created_at=result.created,
    )


def answer_of_stream(stream: ChatStream, pieces: Sequence[str | ToolCallDelta]) -> CachedAnswer:
    assert stream.finish is not None
    return CachedAnswer(
        model=served_model(stream.route),
        provider=stream.provider,
        finish=stream.finish,
        pieces=tuple(pieces),
        prompt_tokens=stream.usage.prompt_tokens,
        completion_tokens=stream.usage.completion_tokens,
        created_at=stream.created,
    )


def hit_usage(answer: CachedAnswer) -> Usage:
    return Usage(answer.prompt_tokens, answer.completion_tokens, cost_usd=0.0)


def cached_completion(answer: CachedAnswer, request_id: str) -> chat_pb2.ChatCompletion:
    text = answer.text
    message = chat_pb2.Message(
        role="assistant",
        content=text,
        tool_calls=[
            chat_pb2.ToolCall(
                id=t.id, type="function", function=chat_pb2.FunctionCall(name=t.name, arguments=t.arguments)
            )
            for t in answer.tool_calls
        ],
    )
    usage = hit_usage(answer)
    return chat_pb2.ChatCompletion(
        id=request_id,
        model=answer.model,
        provider=CACHE_PROVIDER,
        created=int(time.time()),
        choices=[chat_pb2.Choice(index=0, message=message, finish_reason=FINISH[answer.finish])],
        usage=usage_message(usage),
        response=text,
        tokens_used=usage.total_tokens,
    )


def replay(answer: CachedAnswer, request_id: str) -> Iterator[chat_pb2.ChatEvent]:
    Event = chat_pb2.ChatEvent
    seq = 0
    role = "assistant"
    for piece in answer.pieces:
        running = usage_pb2.Usage(completion_tokens=seq + 1, total_tokens=seq + 1)
        if isinstance(piece, str):
            yield Event(sequence=seq, delta=chat_pb2.ContentDelta(content=piece, role=role), running_usage=running)
            role = ""
        else:
            call = chat_pb2.ToolCallDelta(index=piece.index, id=piece.id, name=piece.name, arguments=piece.arguments)
            yield Event(sequence=seq, tool_call=call, running_usage=running)
        seq += 1
    usage = usage_message(hit_usage(answer))
    yield Event(sequence=seq, usage=usage, running_usage=usage)
    finish = chat_pb2.Finish(reason=FINISH[answer.finish], model=answer.model, provider=CACHE_PROVIDER, id=request_id)
    yield Event(sequence=seq + 1, finish=finish, running_usage=usage)
