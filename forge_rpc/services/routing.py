"""The routed-task part of RoutingService: ResolveRoute (where a request would go, and why) and ExecuteTask
(seed 003's /api/tasks/execute/ with `service: "auto"`): route by the rules, generate through the engine, fall
back along the rule's targets, write one usage-ledger row, and say what answered."""

from __future__ import annotations

import dataclasses
import time

from forge.routing.v1 import routing_pb2

from ..adapters.providers.directory import ProviderDirectory
from ..domain import (
    ChatEngine,
    ChatMessage,
    ChatParams,
    ChatResult,
    ErrorCode,
    FieldViolation,
    ForgeError,
    InvalidArgument,
)
from ..domain.ledger import Operation, UsageSink
from ..domain.routing_rules import RouteQuery
from .chat_convert import served_model, usage_message
from .context import CallContext, add_trailing, request_id
from .route_planner import RoutePlan, RoutePlanner
from .routing_convert import target_message, task_type_from_proto
from .usage_recording import Generation

__all__ = ["TaskRoutingServicer", "worth_falling_back"]

MAX_PROMPT_CHARS = 1_000_000
MAX_METADATA = 64


def worth_falling_back(err: ForgeError) -> bool:
    """The failures a rule's fallbacks are for: the target is unavailable, rate limited, or its context is too
    short for the prompt. Anything the caller must fix (bad input, unknown model) would fail everywhere."""
    if err.code is ErrorCode.UNAVAILABLE or err.reason == "PROVIDER_RATE_LIMITED":
        return True
    return err.code is ErrorCode.INVALID_ARGUMENT and "provider" in err.metadata and "context" in err.message.lower()


def _query(task_type: int, model: str, metadata: dict[str, str]) -> RouteQuery:
    if len(metadata) > MAX_METADATA:
        raise InvalidArgument([FieldViolation("metadata", f"at most {MAX_METADATA} keys")])
    return RouteQuery(task_type_from_proto(task_type), model.strip(), metadata)


def _params(request: routing_pb2.ExecuteTaskRequest, query: RouteQuery) -> ChatParams:
    bad = []
    if not request.prompt.strip():
        bad.append(FieldViolation("prompt", "required"))
    elif len(request.prompt) > MAX_PROMPT_CHARS:
        bad.append(FieldViolation("prompt", f"at most {MAX_PROMPT_CHARS} characters"))
    if request.HasField("max_tokens") and request.max_tokens < 1:
        bad.append(FieldViolation("max_tokens", "must be at least 1"))
    if request.HasField("temperature") and not 0.0 <= request.temperature <= 2.0:
        bad.append(FieldViolation("temperature", "must be between 0 and 2"))
    if bad:
        raise InvalidArgument(bad)
    messages = [ChatMessage("system", request.system)] if request.system else []
    messages.append(ChatMessage("user", request.prompt))
    return ChatParams(
        model="",
        messages=messages,
        temperature=request.temperature if request.HasField("temperature") else None,
        max_tokens=request.max_tokens if request.HasField("max_tokens") else None,
        metadata=dict(query.metadata),
        task_type=query.task_type.value if query.task_type is not None else "",
    )


class TaskRoutingServicer:
    def __init__(
        self, planner: RoutePlanner, engine: ChatEngine, directory: ProviderDirectory, ledger: UsageSink | None
    ) -> None:
        self._planner = planner
        self._engine = engine
        self._directory = directory
        self._ledger = ledger

    async def ResolveRoute(
        self, request: routing_pb2.ResolveRouteRequest, context: CallContext
    ) -> routing_pb2.ResolveRouteResponse:
        plan = await self._planner.plan(
            _query(request.task_type, request.model, dict(request.metadata)), request.service
        )
        first, rest = (plan.targets[0], plan.targets[1:]) if plan.targets else (None, [])
        reason = plan.reason if first is not None else f"{plan.reason}; every target's circuit breaker is open"
        return routing_pb2.ResolveRouteResponse(
            target=target_message(first.target) if first is not None else None,
            fallbacks=[target_message(t.target) for t in rest],
            rule_id=plan.rule.id if plan.rule is not None else "",
            reason=reason,
            skipped=[target_message(t.target) for t in plan.skipped],
        )

    async def ExecuteTask(
        self, request: routing_pb2.ExecuteTaskRequest, context: CallContext
    ) -> routing_pb2.ExecuteTaskResponse:
        started = time.perf_counter()
        query = _query(request.task_type, request.model, dict(request.metadata))
        params = _params(request, query)
        plan = await self._planner.plan(query, request.service)
        if not plan.targets:
            raise ForgeError(
                f"{plan.reason}: every target's circuit breaker is open",
                ErrorCode.UNAVAILABLE,
                "CIRCUIT_OPEN",
                retry_after_s=1.0,
            )
        with Generation(self._ledger, Operation.CHAT, plan.targets[0].model, context) as gen:
            result, attempts = await self._run(plan, params, context)
            gen.completed(served_model(result.route), result.provider, result.usage)
        model = served_model(result.route)
        service = self._directory.service_name(result.route.deployment.provider_id)
        rule_id = plan.rule.id if plan.rule is not None else ""
        add_trailing(
            ("x-forge-provider", result.provider),
            ("x-forge-model", model),
            ("x-forge-service", service),
            ("x-forge-attempts", str(attempts)),
            ("x-forge-deployment", result.deployment_id),
            ("x-forge-upstream-ms", f"{result.upstream_ms:.1f}"),
            *((("x-forge-rule", rule_id),) if rule_id else ()),
        )
        usage = result.usage
        return routing_pb2.ExecuteTaskResponse(
            task_id=request_id.get(),
            status="completed",
            result=result.completion.text,
            execution_time=round(time.perf_counter() - started, 4),
            service_used=service,
            model_used=model,
            tokens_used=usage.total_tokens,
            cost=usage.cost_usd,
            usage=usage_message(usage),
            attempts=attempts,
            rule_id=rule_id,
            deployment=result.deployment_id,
        )

    async def _run(self, plan: RoutePlan, params: ChatParams, context: CallContext) -> tuple[ChatResult, int]:
        """The plan's targets in order until one answers; the last failure is the caller's when none does.
        Returns the answer and the attempts made: one per target that failed, plus the engine's own (its
        retries and model-group fallbacks) for the one that answered."""
        for tried, target in enumerate(plan.targets):
            try:
                result = await self._engine.complete(
                    dataclasses.replace(params, model=target.model), context.time_remaining()
                )
            except ForgeError as err:
                if tried + 1 == len(plan.targets) or not worth_falling_back(err):
                    raise
                continue
            return result, tried + result.attempts
        raise AssertionError("a plan has at least one target")  # pragma: no cover
