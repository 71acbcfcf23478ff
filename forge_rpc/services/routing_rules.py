"""The routing-rule part of RoutingService: List/Get/Create/Update/DeleteRoutingRule (seed 003's
/api/routing/rules/). Writes go to PostgreSQL and then into this replica's rule book at once."""

from __future__ import annotations

import dataclasses

from forge.routing.v1 import routing_pb2

from ..adapters.providers.directory import ProviderDirectory
from ..adapters.store.routing_store import RoutingStore
from ..domain import FieldViolation, InvalidArgument, NotFound
from ..domain.routing_rules import DEFAULT_PRIORITY, RoutingRule, rule_violations
from .context import CallContext, principal
from .paging import next_page_token, page_offset, page_size
from .routing_convert import (
    RULE_FIELDS,
    fields_set,
    require_admin,
    rule_from_message,
    rule_message,
    task_type_from_proto,
)
from .rule_book import RuleBook

__all__ = ["RoutingRulesServicer"]


def _rule_id(value: str) -> str:
    rule_id = value.strip()
    if not rule_id:
        raise InvalidArgument([FieldViolation("rule_id", "required")])
    return rule_id


class RoutingRulesServicer:
    def __init__(self, store: RoutingStore, book: RuleBook, directory: ProviderDirectory) -> None:
        self._store = store
        self._book = book
        self._directory = directory

    def _check(self, rule: RoutingRule, services: bool = True) -> None:
        bad = rule_violations(rule)
        # A rule may only name services that exist when it is written; if one disappears in a later reload,
        # routing skips it.
        known = {s.name for s in self._directory.services()}
        named = [("rule.service", rule.service)] + [
            (f"rule.fallbacks[{i}].service", f.service) for i, f in enumerate(rule.fallbacks)
        ]
        for path, service in named if services else ():
            if service and service not in known:
                bad.append(FieldViolation(path, f"no service {service!r}; configured: {', '.join(sorted(known))}"))
        if bad:
            raise InvalidArgument(bad)

    async def ListRoutingRules(
        self, request: routing_pb2.ListRoutingRulesRequest, context: CallContext
    ) -> routing_pb2.ListRoutingRulesResponse:
        size = page_size(request.page_size)
        offset = page_offset(request.page_token)
        wanted = task_type_from_proto(request.task_type)
        rules = [r for r in self._book.rules if wanted is None or r.task_type is wanted]
        page = rules[offset : offset + size]
        return routing_pb2.ListRoutingRulesResponse(
            rules=[rule_message(r) for r in page], next_page_token=next_page_token(offset, len(page), len(rules))
        )

    async def GetRoutingRule(
        self, request: routing_pb2.GetRoutingRuleRequest, context: CallContext
    ) -> routing_pb2.RoutingRule:
        rule_id = _rule_id(request.rule_id)
        rule = self._book.rules.get(rule_id)
        if rule is None:
            # Perhaps another replica created it a moment ago.
            rule = (await self._book.reload()).get(rule_id)
        if rule is None:
            raise NotFound("routing rule", rule_id)
        return rule_message(rule)

    async def CreateRoutingRule(
        self, request: routing_pb2.CreateRoutingRuleRequest, context: CallContext
    ) -> routing_pb2.RoutingRule:
        require_admin("creating a routing rule")
        if not request.HasField("rule"):
            raise InvalidArgument([FieldViolation("rule", "required")])
        rule = rule_from_message(request.rule)
        self._check(rule)
        created = await self._store.create_rule(rule, principal.get().user_id)
        await self._book.reload()
        return rule_message(created)

    async def UpdateRoutingRule(
        self, request: routing_pb2.UpdateRoutingRuleRequest, context: CallContext
    ) -> routing_pb2.RoutingRule:
        require_admin("changing a routing rule")
        rule_id = _rule_id(request.rule_id)
        if not request.HasField("rule"):
            raise InvalidArgument([FieldViolation("rule", "required")])
        paths = {p.removeprefix("rule.") for p in request.update_mask.paths}
        unknown = sorted(paths - RULE_FIELDS)
        if unknown:
            raise InvalidArgument(
                [FieldViolation("update_mask", f"cannot update {', '.join(unknown)}; fields: {sorted(RULE_FIELDS)}")]
            )
        if request.rule.id and request.rule.id != rule_id:
            raise InvalidArgument([FieldViolation("rule.id", "a rule's id cannot change")])
        given = rule_from_message(request.rule)
        changes = paths or fields_set(request.rule)
        if not changes:
            raise InvalidArgument([FieldViolation("rule", "sets no field to change")])
        values = {name: getattr(given, name) for name in changes}
        if "priority" in values and not request.rule.priority:
            values["priority"] = DEFAULT_PRIORITY

        def change(current: RoutingRule) -> RoutingRule:
            updated = dataclasses.replace(current, **values)
            self._check(updated, services="service" in values or "fallbacks" in values)
            return updated

        updated = await self._store.update_rule(rule_id, change)
        if updated is None:
            raise NotFound("routing rule", rule_id)
        await self._book.reload()
        return rule_message(updated)

    async def DeleteRoutingRule(
        self, request: routing_pb2.DeleteRoutingRuleRequest, context: CallContext
    ) -> routing_pb2.DeleteRoutingRuleResponse:
        require_admin("deleting a routing rule")
        rule_id = _rule_id(request.rule_id)
        if not await self._store.delete_rule(rule_id):
            raise NotFound("routing rule", rule_id)
        await self._book.reload()
        return routing_pb2.DeleteRoutingRuleResponse(deleted=True, rule_id=rule_id)
