"""Routing rules for chat: a chat request that names no model (or `auto`) goes where the first matching routing
rule says — by its task type, its metadata and the rules' priorities — as ExecuteTask's `service: auto` does.

A policy rather than servicer code because it rewrites the request's model before anything else reads it: the
API key's allowed models, the rate limits per model and the cache all see the model the rule chose. A request
that names a model keeps it, and one no rule matches keeps the default model.
"""

from __future__ import annotations

from typing import Any

from forge.chat.v1 import chat_pb2

from ..domain.routing_rules import RouteQuery
from ..services.context import CallContext, add_response_header, add_trailing
from ..services.route_planner import RoutePlanner
from ..services.routing_convert import task_type_from_proto
from .policy import CallInfo, Release

__all__ = ["AUTO", "ChatRulesPolicy"]

AUTO = "auto"

_CHAT_CALLS = frozenset(
    {
        "/forge.chat.v1.ChatService/CreateChatCompletion",
        "/forge.chat.v1.ChatService/StreamChatCompletion",
    }
)


class ChatRulesPolicy:
    def __init__(self, planner: RoutePlanner) -> None:
        self._planner = planner

    async def admit(self, call: CallInfo, request: Any, context: CallContext) -> Release | None:
        if call.full_name not in _CHAT_CALLS:
            return None
        chat: chat_pb2.ChatRequest = request.chat
        if chat.model and chat.model.lower() != AUTO:
            return None
        query = RouteQuery(task_type_from_proto(chat.task_type, "chat.task_type"), "", dict(chat.metadata))
        plan = await self._planner.plan(query)
        if plan.rule is None:
            chat.model = ""  # `auto` with no rule: the default model
            return None
        # A target whose breaker is open is still better than none: the engine's own fallbacks take over.
        target = (plan.targets or plan.skipped)[0]
        chat.model = target.model
        routed = ("x-forge-route-rule", plan.rule.id)
        add_response_header(routed)
        add_trailing(routed)
        return None
