"""forge.chat.v1 messages ⇄ domain chat types."""

from __future__ import annotations

from typing import Any

from forge.chat.v1 import chat_pb2
from forge.type.v1 import task_type_pb2, usage_pb2
from google.protobuf import json_format

from ..domain import ChatMessage, ChatParams, ChatResult, FinishReason, Route, ToolCall, Usage

__all__ = ["FINISH", "chat_params", "completion_message", "served_model", "usage_message"]

FINISH = {
    FinishReason.STOP: chat_pb2.FINISH_REASON_STOP,
    FinishReason.LENGTH: chat_pb2.FINISH_REASON_LENGTH,
    FinishReason.TOOL_CALLS: chat_pb2.FINISH_REASON_TOOL_CALLS,
    FinishReason.CONTENT_FILTER: chat_pb2.FINISH_REASON_CONTENT_FILTER,
    FinishReason.CANCELLED: chat_pb2.FINISH_REASON_CANCELLED,
    FinishReason.ERROR: chat_pb2.FINISH_REASON_ERROR,
}


def _opt(msg: Any, field: str, fallback: Any = None) -> Any:
    return getattr(msg, field) if msg.HasField(field) else fallback


def chat_params(req: chat_pb2.ChatRequest) -> ChatParams:
    messages = [
        ChatMessage(
            role=m.role,
            content=m.content,
            name=m.name,
            tool_calls=tuple(ToolCall(c.id, c.function.name, c.function.arguments) for c in m.tool_calls),
            tool_call_id=m.tool_call_id,
        )
        for m in req.messages
    ]
    if req.prompt:
        messages.append(ChatMessage(role="user", content=req.prompt))
    opts = req.options
    task = task_type_pb2.TaskType.Name(req.task_type) if req.task_type else ""
    return ChatParams(
        model=req.model,
        messages=messages,
        temperature=_opt(req, "temperature", _opt(opts, "temperature")),
        top_p=_opt(req, "top_p", _opt(opts, "top_p")),
        max_tokens=_opt(req, "max_tokens", _opt(opts, "max_tokens")),
        stop=list(req.stop),
        seed=_opt(req, "seed", _opt(opts, "seed")),
        tools=[json_format.MessageToDict(t, preserving_proto_field_name=True) for t in req.tools],
        tool_choice=req.tool_choice or None,
        response_format=(
            json_format.MessageToDict(req.response_format, preserving_proto_field_name=True)
            if req.HasField("response_format")
            else None
        ),
        user=req.user,
        presence_penalty=_opt(req, "presence_penalty"),
        frequency_penalty=_opt(req, "frequency_penalty"),
        metadata=dict(req.metadata),
        task_type=task.removeprefix("TASK_TYPE_").lower(),
    )


def served_model(route: Route) -> str:
    """The name the caller can use again: the configured name, or for a wildcard route the concrete one."""
    return route.upstream_model if route.deployment.is_wildcard else route.deployment.model_name


def usage_message(u: Usage) -> usage_pb2.Usage:
    return usage_pb2.Usage(
        prompt_tokens=u.prompt_tokens,
        completion_tokens=u.completion_tokens,
        total_tokens=u.total_tokens,
        cost_usd=u.cost_usd,
        estimated=u.estimated,
    )


def completion_message(result: ChatResult, request_id: str) -> chat_pb2.ChatCompletion:
    c = result.completion
    message = chat_pb2.Message(
        role="assistant",
        content=c.text,
        tool_calls=[
            chat_pb2.ToolCall(
                id=t.id, type="function", function=chat_pb2.FunctionCall(name=t.name, arguments=t.arguments)
            )
            for t in c.tool_calls
        ],
    )
    return chat_pb2.ChatCompletion(
        id=request_id,
        model=served_model(result.route),
        provider=result.provider,
        created=int(result.created),
        choices=[chat_pb2.Choice(index=0, message=message, finish_reason=FINISH[c.finish])],
        usage=usage_message(result.usage),
        response=c.text,
        tokens_used=result.usage.total_tokens,
    )
