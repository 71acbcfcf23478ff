"""forge.routing.v1 routing rules ⇄ domain rules, and the admin check the RoutingService's writes share."""

from __future__ import annotations

from collections.abc import Sequence

from forge.routing.v1 import routing_pb2
from forge.type.v1 import task_type_pb2

from ..domain import FieldViolation, InvalidArgument, PermissionDenied
from ..domain.routing_rules import DEFAULT_PRIORITY, RouteTarget, RoutingRule, TaskType
from .context import principal
from .timestamps import timestamp

__all__ = [
    "RULE_FIELDS",
    "fields_set",
    "require_admin",
    "rule_from_message",
    "rule_message",
    "target_message",
    "task_type_from_proto",
    "task_type_to_proto",
]

RULE_FIELDS = frozenset(
    {"name", "task_type", "service", "model", "priority", "enabled", "match_metadata", "match_model", "fallbacks"}
)
"""Fields of a rule a caller may set (id and times are the server's)."""


def require_admin(action: str) -> None:
    """The contract marks configuration changes "Admin only"; with auth off every caller is the local admin."""
    who = principal.get()
    if not who.is_admin:
        raise PermissionDenied(f"{action} needs the admin role", "ADMIN_REQUIRED")


def task_type_from_proto(value: int, field: str = "task_type") -> TaskType | None:
    if value == task_type_pb2.TASK_TYPE_UNSPECIFIED:
        return None
    try:
        name = task_type_pb2.TaskType.Name(value)  # type: ignore[arg-type]
    except ValueError:
        raise InvalidArgument([FieldViolation(field, f"unknown task type {value}")]) from None
    return TaskType(name.removeprefix("TASK_TYPE_").lower())


def task_type_to_proto(value: TaskType | None) -> task_type_pb2.TaskType.ValueType:
    if value is None:
        return task_type_pb2.TASK_TYPE_UNSPECIFIED
    return task_type_pb2.TaskType.Value(f"TASK_TYPE_{value.value.upper()}")


def target_message(t: RouteTarget) -> routing_pb2.RouteTarget:
    return routing_pb2.RouteTarget(service=t.service, model=t.model)


def rule_message(rule: RoutingRule) -> routing_pb2.RoutingRule:
    return routing_pb2.RoutingRule(
        id=rule.id,
        task_type=task_type_to_proto(rule.task_type),
        service=rule.service,
        model=rule.model,
        priority=rule.priority,
        enabled=rule.enabled,
        match_metadata=dict(rule.match_metadata),
        match_model=rule.match_model,
        fallbacks=[target_message(f) for f in rule.fallbacks],
        name=rule.name,
        created_at=timestamp(rule.created_at),
        updated_at=timestamp(rule.updated_at),
    )


def _targets(items: Sequence[routing_pb2.RouteTarget]) -> tuple[RouteTarget, ...]:
    return tuple(RouteTarget(t.service.strip(), t.model.strip()) for t in items)


def rule_from_message(msg: routing_pb2.RoutingRule, prefix: str = "rule") -> RoutingRule:
    """The rule as given; a priority of 0 (unset in proto3) means the default."""
    return RoutingRule(
        id=msg.id.strip(),
        service=msg.service.strip(),
        model=msg.model.strip(),
        task_type=task_type_from_proto(msg.task_type, f"{prefix}.task_type"),
        priority=msg.priority or DEFAULT_PRIORITY,
        enabled=msg.enabled if msg.HasField("enabled") else True,
        match_metadata=dict(msg.match_metadata),
        match_model=msg.match_model.strip(),
        fallbacks=_targets(msg.fallbacks),
        name=msg.name.strip(),
    )


def fields_set(msg: routing_pb2.RoutingRule) -> set[str]:
    """The updatable fields `msg` sets (non-default scalars, present optionals, non-empty collections)."""
    return {f.name for f, _ in msg.ListFields()} & RULE_FIELDS
