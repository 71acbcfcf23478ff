"""RoutePlanner: where a request goes, in order, and why — a named service, else the first matching routing
rule with its fallbacks, else the service that serves the requested (or default) model.

A plan names catalog model names, so the generation itself still runs through the engine (and whatever
load balancing, retries and breakers it applies to that name).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..adapters.providers.directory import ProviderDirectory
from ..adapters.providers.service_view import default_model_of, model_name_on
from ..domain import ErrorCode, FailedPrecondition, ForgeError, NotFound
from ..domain.routing_rules import RouteQuery, RouteTarget, RoutingRule
from .breaker_hook import BreakerBoard, open_deployments
from .rule_book import RuleBook

__all__ = ["PlannedTarget", "RoutePlan", "RoutePlanner"]


@dataclass(frozen=True, slots=True)
class PlannedTarget:
    service: str
    provider_id: str
    model: str
    """The catalog name that routes to this service (what the engine is asked for)."""
    deployment: str
    """The model name of the deployment it resolves to (what circuit breakers are per)."""

    @property
    def target(self) -> RouteTarget:
        return RouteTarget(self.service, self.model)


@dataclass(slots=True)
class RoutePlan:
    targets: list[PlannedTarget]
    rule: RoutingRule | None
    reason: str
    skipped: list[PlannedTarget] = field(default_factory=list)
    """Targets whose circuit breaker is open."""


class RoutePlanner:
    def __init__(self, directory: ProviderDirectory, rules: RuleBook, breakers: BreakerBoard | None = None) -> None:
        self._directory = directory
        self._rules = rules
        self.breakers = breakers

    async def plan(self, query: RouteQuery, service: str = "") -> RoutePlan:
        pinned = service.strip()
        if pinned and pinned.lower() != "auto":
            if self._directory.service(pinned) is None:
                raise NotFound("service", pinned)
            wanted, rule, reason = [RouteTarget(pinned, query.model)], None, f"service {pinned} named by the request"
        elif (rule := self._rules.match(query)) is not None:
            wanted = [RouteTarget(t.service, t.model or query.model) for t in (rule.target, *rule.fallbacks)]
            reason = rule.describe()
        else:
            return await self._by_model(query)
        plan = RoutePlan([], rule, reason)
        problems: list[str] = []
        blocked = open_deployments(self.breakers)
        for t in wanted:
            found = await self._resolve(t, problems)
            if found is None:
                continue
            (plan.skipped if (found.provider_id, found.deployment) in blocked else plan.targets).append(found)
        if not plan.targets and not plan.skipped:
            if rule is None:
                raise ForgeError(
                    f"service {pinned!r} cannot serve this request: {'; '.join(problems)}",
                    ErrorCode.NOT_FOUND,
                    "MODEL_NOT_FOUND",
                    metadata={"service": pinned},
                )
            raise FailedPrecondition(f"{reason} matched, but no target can serve it: {'; '.join(problems)}", "NO_ROUTE")
        if problems:
            plan.reason += f"; passed over {'; '.join(problems)}"
        return plan

    async def _resolve(self, t: RouteTarget, problems: list[str]) -> PlannedTarget | None:
        pid = self._directory.provider_id(t.service)
        if pid is None:
            problems.append(f"{t.service}: not configured")
            return None
        model = t.model or default_model_of(self._directory.current(), pid)
        if not model:
            problems.append(f"{t.service}: no default model (name one)")
            return None
        name = model_name_on(self._directory.current(), pid, model)
        if name is None:
            await self._directory.refresh()  # an Ollama model pulled a moment ago
            name = model_name_on(self._directory.current(), pid, model)
        route = self._directory.current().find(name) if name is not None else None
        if name is None or route is None:
            problems.append(f"{t.service}: does not serve {model!r}")
            return None
        return PlannedTarget(t.service, pid, name, route.deployment.model_name)

    async def _by_model(self, query: RouteQuery) -> RoutePlan:
        catalog = self._directory.current()
        name = query.model or catalog.default_model or ""
        route = catalog.find(name)
        if route is None:
            route = (await self._directory.refresh()).resolve(name)
        pid = route.deployment.provider_id
        target = PlannedTarget(self._directory.service_name(pid), pid, name, route.deployment.model_name)
        reason = f"no rule matched; model {name}" if query.model else f"no rule matched; default model {name}"
        plan = RoutePlan([], None, reason)
        (plan.skipped if (pid, target.deployment) in open_deployments(self.breakers) else plan.targets).append(target)
        return plan
