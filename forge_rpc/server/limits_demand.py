"""What a call asks of the token limits and budgets, read from its request before it runs.

Every RPC counts as one request against requests/minute (except the configured exemptions: health probes).
The RPCs that generate or embed also reserve tokens — their prompt estimate plus the completion allowance — and
name the model that per-model limits and prices apply to: chat (unary, streamed, batch), embeddings, RAG queries
(with `generate_response` they also generate), ExecuteTask, and WarmCache (it runs chat requests). Only
StreamChatCompletion holds a concurrent-stream slot: Watch… subscriptions and pulls are not generations.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from forge.analytics.v1 import analytics_pb2
from forge.chat.v1 import chat_pb2
from forge.rag.v1 import rag_pb2
from forge.routing.v1 import routing_pb2

from ..domain.limits import estimate_prompt_tokens

__all__ = ["Need", "need_of"]


@dataclass(frozen=True, slots=True)
class Need:
    model: str
    """The model named by the request ("" when it names none: the default model)."""
    prompt_tokens: int
    """Estimated."""
    completion_tokens: int
    """The allowance: `max_tokens`, else the configured default."""
    stream: bool = False

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


Reader = Callable[[Any, int], Need]


def _chat_prompt(chat: chat_pb2.ChatRequest) -> int:
    chars = len(chat.prompt) + sum(len(m.content) + sum(len(c.function.arguments) for c in m.tool_calls)
                                   for m in chat.messages)  # fmt: skip
    return estimate_prompt_tokens(chars, len(chat.messages) + (1 if chat.prompt else 0))


def _max_tokens(chat: chat_pb2.ChatRequest, default: int) -> int:
    if chat.HasField("max_tokens"):
        return max(0, chat.max_tokens)
    if chat.HasField("options") and chat.options.HasField("max_tokens"):
        return max(0, chat.options.max_tokens)
    return default


def _chats(chats: Iterable[chat_pb2.ChatRequest], default: int, stream: bool = False) -> Need:
    models: set[str] = set()
    prompt = completion = 0
    for chat in chats:
        models.add(chat.model)
        prompt += _chat_prompt(chat)
        completion += _max_tokens(chat, default)
    # A batch naming several models is limited by its caller's limits only, not per model.
    return Need(models.pop() if len(models) == 1 else "", prompt, completion, stream)


def _create(request: chat_pb2.CreateChatCompletionRequest, default: int) -> Need:
    return _chats((request.chat,), default)


def _stream(request: chat_pb2.StreamChatCompletionRequest, default: int) -> Need:
    return _chats((request.chat,), default, stream=True)


def _batch(request: chat_pb2.BatchCreateChatCompletionsRequest, default: int) -> Need:
    return _chats(request.requests, default)


def _warm(request: analytics_pb2.WarmCacheRequest, default: int) -> Need:
    return _chats(request.requests, default)


def _embeddings(request: rag_pb2.CreateEmbeddingsRequest, default: int) -> Need:
    return Need(request.model, estimate_prompt_tokens(sum(len(t) for t in request.input), 0), 0)


def _query(request: rag_pb2.QueryRequest, default: int) -> Need:
    prompt = estimate_prompt_tokens(len(request.query), 2 if request.generate_response else 0)
    if not request.generate_response:
        return Need("", prompt, 0)
    completion = max(0, request.max_tokens) if request.HasField("max_tokens") else default
    return Need(request.model, prompt, completion)


def _task(request: routing_pb2.ExecuteTaskRequest, default: int) -> Need:
    prompt = estimate_prompt_tokens(len(request.prompt) + len(request.system), 2 if request.system else 1)
    completion = max(0, request.max_tokens) if request.HasField("max_tokens") else default
    return Need(request.model, prompt, completion)


_READERS: dict[str, Reader] = {
    "/forge.chat.v1.ChatService/CreateChatCompletion": _create,
    "/forge.chat.v1.ChatService/StreamChatCompletion": _stream,
    "/forge.chat.v1.ChatService/BatchCreateChatCompletions": _batch,
    "/forge.rag.v1.RagService/CreateEmbeddings": _embeddings,
    "/forge.rag.v1.RagService/Query": _query,
    "/forge.routing.v1.RoutingService/ExecuteTask": _task,
    "/forge.analytics.v1.AnalyticsService/WarmCache": _warm,
}


def need_of(method: str, request: Any, default_completion: int) -> Need | None:
    """None for RPCs that neither generate nor embed: they count as a request and nothing else."""
    reader = _READERS.get(method)
    return reader(request, default_completion) if reader is not None else None
