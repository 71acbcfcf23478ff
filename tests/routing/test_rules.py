"""Routing rules CRUD over gRPC and over the seed's REST paths (/api/routing/rules/), stored in PostgreSQL,
and the errors bad input gets (never INTERNAL)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import aiohttp
import grpc
import pytest
from forge.routing.v1 import routing_pb2, routing_pb2_grpc
from forge.type.v1 import task_type_pb2
from google.protobuf import field_mask_pb2

from forge_rpc.server.app import ForgeApp
from tests.routing.conftest import BADKEY, FAKE, table_rows

pytestmark = pytest.mark.asyncio

if TYPE_CHECKING:
    Stub = routing_pb2_grpc.RoutingServiceAsyncStub
CODE = task_type_pb2.TASK_TYPE_CODE_GENERATION


async def create(stub: Stub, **fields: object) -> routing_pb2.RoutingRule:
    rule = routing_pb2.RoutingRule(**fields)  # type: ignore[arg-type]
    return await stub.CreateRoutingRule(routing_pb2.CreateRoutingRuleRequest(rule=rule))


async def test_create_get_list_update_delete(routing: Stub, routed: ForgeApp) -> None:
    made = await create(
        routing, task_type=CODE, service=FAKE, model="gpt-4o-mini", priority=2, match_metadata={"team": "ml"}
    )
    assert made.id.startswith("rule-")
    assert made.enabled and made.priority == 2 and made.created_at.seconds > 0
    assert await table_rows(routed, "SELECT service, model, task_type FROM routing_rules WHERE id = %s", made.id) == [
        (FAKE, "gpt-4o-mini", "code_generation")
    ]
    assert await routing.GetRoutingRule(routing_pb2.GetRoutingRuleRequest(rule_id=made.id)) == made

    default = await create(routing, service=BADKEY, name="catch-all")
    assert default.priority == 100  # unset priority: after the explicit ones
    listed = await routing.ListRoutingRules(routing_pb2.ListRoutingRulesRequest())
    assert [r.id for r in listed.rules] == [made.id, default.id]
    only_code = await routing.ListRoutingRules(routing_pb2.ListRoutingRulesRequest(task_type=CODE))
    assert [r.id for r in only_code.rules] == [made.id]
    first_page = await routing.ListRoutingRules(routing_pb2.ListRoutingRulesRequest(page_size=1))
    second_page = await routing.ListRoutingRules(
        routing_pb2.ListRoutingRulesRequest(page_size=1, page_token=first_page.next_page_token)
    )
    assert [r.id for r in (*first_page.rules, *second_page.rules)] == [made.id, default.id]
    assert not second_page.next_page_token

    # The mask names what changes; the rest stays, even fields set in the message.
    updated = await routing.UpdateRoutingRule(
        routing_pb2.UpdateRoutingRuleRequest(
            rule_id=default.id,
            rule=routing_pb2.RoutingRule(priority=1, model="ignored", enabled=False),
            update_mask=field_mask_pb2.FieldMask(paths=["priority", "enabled"]),
        )
    )
    assert (updated.priority, updated.enabled, updated.model, updated.name) == (1, False, "", "catch-all")
    assert updated.updated_at.ToNanoseconds() >= default.updated_at.ToNanoseconds()
    reordered = await routing.ListRoutingRules(routing_pb2.ListRoutingRulesRequest())
    assert [r.id for r in reordered.rules] == [default.id, made.id]
    # Without a mask, the fields the message sets change.
    renamed = await routing.UpdateRoutingRule(
        routing_pb2.UpdateRoutingRuleRequest(rule_id=made.id, rule=routing_pb2.RoutingRule(name="code to ml"))
    )
    assert (renamed.name, renamed.model, renamed.priority) == ("code to ml", "gpt-4o-mini", 2)

    gone = await routing.DeleteRoutingRule(routing_pb2.DeleteRoutingRuleRequest(rule_id=made.id))
    assert (gone.deleted, gone.rule_id) == (True, made.id)
    assert await table_rows(routed, "SELECT id FROM routing_rules") == [(default.id,)]
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await routing.GetRoutingRule(routing_pb2.GetRoutingRuleRequest(rule_id=made.id))
    assert err.value.code() == grpc.StatusCode.NOT_FOUND


async def test_chosen_ids_are_kept_and_unique(routing: Stub) -> None:
    rule = await create(routing, id="code-first", service=FAKE)
    assert rule.id == "code-first"
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await create(routing, id="code-first", service=FAKE)
    assert err.value.code() == grpc.StatusCode.ALREADY_EXISTS


@pytest.mark.parametrize(
    ("fields", "bad_field"),
    [
        ({}, "rule.service"),
        ({"service": "no-such-service"}, "rule.service"),
        ({"service": FAKE, "priority": -3}, "rule.priority"),
        ({"service": FAKE, "id": "has space"}, "rule.id"),
        ({"service": FAKE, "task_type": 99}, "rule.task_type"),
        ({"service": FAKE, "fallbacks": [routing_pb2.RouteTarget(service="nowhere")]}, "rule.fallbacks[0].service"),
    ],
)
async def test_bad_rules_are_invalid_arguments(routing: Stub, fields: dict[str, object], bad_field: str) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await create(routing, **fields)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert bad_field in (err.value.details() or "")


async def test_update_and_delete_errors(routing: Stub) -> None:
    rule = await create(routing, service=FAKE)
    cases = [
        (routing_pb2.UpdateRoutingRuleRequest(rule_id="nope", rule=routing_pb2.RoutingRule(priority=3)), "NOT_FOUND"),
        (routing_pb2.UpdateRoutingRuleRequest(rule_id=rule.id), "INVALID_ARGUMENT"),
        (
            routing_pb2.UpdateRoutingRuleRequest(
                rule_id=rule.id,
                rule=routing_pb2.RoutingRule(priority=3),
                update_mask=field_mask_pb2.FieldMask(paths=["created_at"]),
            ),
            "INVALID_ARGUMENT",
        ),
        (
            routing_pb2.UpdateRoutingRuleRequest(rule_id=rule.id, rule=routing_pb2.RoutingRule(service="elsewhere")),
            "INVALID_ARGUMENT",
        ),
    ]
    for request, code in cases:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await routing.UpdateRoutingRule(request)
        assert err.value.code().name == code, request
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await routing.DeleteRoutingRule(routing_pb2.DeleteRoutingRuleRequest(rule_id="nope"))
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    unchanged = await routing.GetRoutingRule(routing_pb2.GetRoutingRuleRequest(rule_id=rule.id))
    assert unchanged.service == FAKE


async def test_seed_rest_paths(http: aiohttp.ClientSession) -> None:
    seed_rule = {"task_type": "code_generation", "service": FAKE, "model": "gpt-4o-mini", "priority": 1}
    async with http.post("/api/routing/rules/", json=seed_rule) as resp:
        assert resp.status == 200, await resp.text()
        made = await resp.json()
    assert made["id"].startswith("rule-")
    assert (made["service"], made["model"], made["priority"]) == (FAKE, "gpt-4o-mini", 1)
    # Seed 003's word for a task type the contract spells differently.
    async with http.post("/api/v1/routing/rules", json={"task_type": "question_answer", "service": FAKE}) as resp:
        assert resp.status == 200, await resp.text()
        qa = await resp.json()
    assert qa["task_type"] == "TASK_TYPE_QUESTION_ANSWERING"
    async with http.get("/api/routing/rules/") as resp:
        assert resp.status == 200
        listed = await resp.json()
    assert [r["id"] for r in listed["rules"]] == [made["id"], qa["id"]]
    async with http.patch(f"/api/v1/routing/rules/{qa['id']}", json={"priority": 7, "enabled": False}) as resp:
        assert resp.status == 200, await resp.text()
        assert (await resp.json())["enabled"] is False
    async with http.delete(f"/api/v1/routing/rules/{made['id']}") as resp:
        assert resp.status == 200
    async with http.get(f"/api/v1/routing/rules/{made['id']}") as resp:
        assert resp.status == 404
        body = await resp.json()
    assert body["code"] == "NOT_FOUND"
    async with http.post("/api/routing/rules/", json={"service": FAKE, "priority": "high"}) as resp:
        assert resp.status == 400


async def test_rules_survive_a_restart_and_reach_other_replicas(routed: ForgeApp, routing: Stub) -> None:
    """A second forge on the same database (another replica) sees the rule within its refresh interval, and
    one started later loads it at start."""
    import asyncio
    import dataclasses

    from forge_rpc.testing import running_forge

    config = dataclasses.replace(
        routed.config, routing=dataclasses.replace(routed.config.routing, rule_cache_ttl_s=0.1)
    )
    async with running_forge(config, http=False) as other:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{other.grpc_port}") as ch:
            replica = routing_pb2_grpc.RoutingServiceStub(ch)
            rule = await create(routing, service=FAKE, name="from replica one")
            for _ in range(100):
                listed = await replica.ListRoutingRules(routing_pb2.ListRoutingRulesRequest())
                if [r.id for r in listed.rules] == [rule.id]:
                    break
                await asyncio.sleep(0.05)
            assert [r.name for r in listed.rules] == ["from replica one"]
