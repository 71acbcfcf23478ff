"""Routing rules: which service and model a request goes to, by task type, request metadata and model name.

Pure matching and validation. Rules are tried by ascending priority (then creation order); the first enabled
rule whose every condition holds wins. The rule book (`services/rule_book.py`) keeps them in memory so that
matching a request never touches the database.
"""

from __future__ import annotations

import enum
import fnmatch
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field

from .errors import FieldViolation

__all__ = [
    "DEFAULT_PRIORITY",
    "RouteQuery",
    "RouteTarget",
    "RoutingRule",
    "RuleSet",
    "TaskType",
    "rule_violations",
]

DEFAULT_PRIORITY = 100
"""Priority of a rule created without one: after the seeds' usual 1, 2, 3…"""
MAX_PRIORITY = 1_000_000
MAX_METADATA = 32
MAX_FALLBACKS = 8

_RULE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")


class TaskType(enum.StrEnum):
    """The eight task types of the Oxide seed, as forge.type.v1.TaskType names them."""

    CODE_GENERATION = "code_generation"
    CODE_REVIEW = "code_review"
    CHAT = "chat"
    SUMMARIZATION = "summarization"
    TRANSLATION = "translation"
    QUESTION_ANSWERING = "question_answering"
    REASONING = "reasoning"
    CREATIVE_WRITING = "creative_writing"


@dataclass(frozen=True, slots=True)
class RouteTarget:
    """A service and a model on it; an empty model means the requested one, else the service's default."""

    service: str
    model: str = ""


@dataclass(frozen=True, slots=True)
class RouteQuery:
    """The routing-relevant parts of a request."""

    task_type: TaskType | None = None
    model: str = ""
    metadata: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class RoutingRule:
    id: str
    service: str
    model: str = ""
    task_type: TaskType | None = None
    """None matches any task type."""
    priority: int = DEFAULT_PRIORITY
    """Smaller first."""
    enabled: bool = True
    match_metadata: Mapping[str, str] = field(default_factory=dict)
    """Every key must be present in the request's metadata with exactly this value."""
    match_model: str = ""
    """A glob on the requested model name ("gpt-4*"); empty matches any."""
    fallbacks: tuple[RouteTarget, ...] = ()
    name: str = ""
    position: int = 0
    """Creation order: the tie-break between equal priorities."""
    created_at: float = 0.0
    updated_at: float = 0.0

    @property
    def target(self) -> RouteTarget:
        return RouteTarget(self.service, self.model)

    def matches(self, query: RouteQuery) -> bool:
        if not self.enabled:
            return False
        if self.task_type is not None and query.task_type is not self.task_type:
            return False
        if self.match_model and not fnmatch.fnmatchcase(query.model, self.match_model):
            return False
        return all(query.metadata.get(k) == v for k, v in self.match_metadata.items())

    def describe(self) -> str:
        """Why this rule matched, for ResolveRoute's `reason`."""
        conditions = []
        if self.task_type is not None:
            conditions.append(f"task_type {self.task_type.value}")
        if self.match_model:
            conditions.append(f"model {self.match_model}")
        conditions.extend(f"{k}={v}" for k, v in sorted(self.match_metadata.items()))
        return f"rule {self.id} ({', '.join(conditions) or 'matches every request'})"


def _order(rule: RoutingRule) -> tuple[int, int, str]:
    return (rule.priority, rule.position, rule.id)


class RuleSet:
    """An immutable, ordered set of rules; replaced whole when the rules change."""

    __slots__ = ("_rules",)

    def __init__(self, rules: Iterable[RoutingRule] = ()) -> None:
        self._rules = tuple(sorted(rules, key=_order))

    def __iter__(self) -> Iterator[RoutingRule]:
        return iter(self._rules)

    def __len__(self) -> int:
        return len(self._rules)

    def get(self, rule_id: str) -> RoutingRule | None:
        return next((r for r in self._rules if r.id == rule_id), None)

    def first_match(self, query: RouteQuery) -> RoutingRule | None:
        return next((r for r in self._rules if r.matches(query)), None)


def rule_violations(rule: RoutingRule, prefix: str = "rule") -> list[FieldViolation]:
    """Every problem with a rule's fields, each named by its path in the request."""
    bad: list[FieldViolation] = []

    def check(ok: bool, name: str, description: str) -> None:
        if not ok:
            bad.append(FieldViolation(f"{prefix}.{name}", description))

    # An empty id is assigned by the store.
    check(
        not rule.id or bool(_RULE_ID.match(rule.id)),
        "id",
        "1 to 63 letters, digits, '_', '.' or '-', starting with a letter or digit",
    )
    check(bool(rule.service.strip()), "service", "required: the service matching requests go to")
    check(len(rule.service) <= 128, "service", "at most 128 characters")
    check(len(rule.model) <= 256, "model", "at most 256 characters")
    check(len(rule.match_model) <= 256, "match_model", "at most 256 characters")
    check(len(rule.name) <= 200, "name", "at most 200 characters")
    check(1 <= rule.priority <= MAX_PRIORITY, "priority", f"must be between 1 and {MAX_PRIORITY}")
    check(len(rule.match_metadata) <= MAX_METADATA, "match_metadata", f"at most {MAX_METADATA} keys")
    for key, value in rule.match_metadata.items():
        check(0 < len(key) <= 128, "match_metadata", f"keys must be 1 to 128 characters, got {key[:40]!r}")
        check(len(value) <= 512, f"match_metadata[{key[:40]}]", "at most 512 characters")
    check(len(rule.fallbacks) <= MAX_FALLBACKS, "fallbacks", f"at most {MAX_FALLBACKS}")
    for i, fb in enumerate(rule.fallbacks):
        check(bool(fb.service.strip()), f"fallbacks[{i}].service", "required")
        check(len(fb.service) <= 128, f"fallbacks[{i}].service", "at most 128 characters")
        check(len(fb.model) <= 256, f"fallbacks[{i}].model", "at most 256 characters")
    return bad
