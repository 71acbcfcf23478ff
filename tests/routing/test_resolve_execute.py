"""Rules decide where a request goes: ResolveRoute says where and why; ExecuteTask (`service: auto`) runs it
through the engine, falls back along the rule's targets, reports service, model, tokens, cost and time, and
writes exactly one usage-ledger row."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import TYPE_CHECKING

import aiohttp
import grpc
import pytest
from forge.routing.v1 import routing_pb2, routing_pb2_grpc
from forge.type.v1 import task_type_pb2
from google.protobuf import field_mask_pb2

from forge_rpc.server.app import ForgeApp
from forge_rpc.testing import running_forge
from tests.fakes import FakeUpstream, fake_model
from tests.routing.conftest import BADKEY, DOWN, FAKE, routing_config
from tests.rpc.test_usage_ledger import ledger_rows

if TYPE_CHECKING:
    Stub = routing_pb2_grpc.RoutingServiceAsyncStub

pytestmark = pytest.mark.asyncio

TT = task_type_pb2


async def rule(stub: Stub, **fields: object) -> routing_pb2.RoutingRule:
    return await stub.CreateRoutingRule(
        routing_pb2.CreateRoutingRuleRequest(rule=routing_pb2.RoutingRule(**fields))  # type: ignore[arg-type]
    )


async def resolve(stub: Stub, **fields: object) -> routing_pb2.ResolveRouteResponse:
    return await stub.ResolveRoute(routing_pb2.ResolveRouteRequest(**fields))  # type: ignore[arg-type]


async def test_priority_and_metadata_decide_the_route(routing: Stub) -> None:
    ml = await rule(routing, priority=1, match_metadata={"team": "ml"}, service=FAKE, model="gpt-ml")
    code = await rule(routing, priority=5, task_type=TT.TASK_TYPE_CODE_GENERATION, service=FAKE, model="gpt-code")
    anything = await rule(routing, priority=50, service=BADKEY, model="gpt-any")

    both = await resolve(routing, task_type=TT.TASK_TYPE_CODE_GENERATION, metadata={"team": "ml"})
    assert (both.rule_id, both.target.service, both.target.model) == (ml.id, FAKE, "fake/gpt-ml")
    assert "team=ml" in both.reason
    just_code = await resolve(routing, task_type=TT.TASK_TYPE_CODE_GENERATION, metadata={"team": "web"})
    assert (just_code.rule_id, just_code.target.model) == (code.id, "fake/gpt-code")
    assert "task_type code_generation" in just_code.reason
    chat = await resolve(routing, task_type=TT.TASK_TYPE_CHAT)
    assert (chat.rule_id, chat.target.service, chat.target.model) == (anything.id, BADKEY, "badkey/gpt-any")

    # Priority, not creation order: moving the catch-all first makes it win everything.
    await routing.UpdateRoutingRule(
        routing_pb2.UpdateRoutingRuleRequest(
            rule_id=anything.id,
            rule=routing_pb2.RoutingRule(priority=1, enabled=False),
            update_mask=field_mask_pb2.FieldMask(paths=["enabled"]),
        )
    )
    unmatched = await resolve(routing, task_type=TT.TASK_TYPE_CHAT)
    assert unmatched.rule_id == ""
    assert (unmatched.target.service, unmatched.target.model) == (FAKE, "fake")  # the default model
    assert "default model" in unmatched.reason
    # A pinned service wins over every rule; a named model without a rule goes where the catalog sends it.
    pinned = await resolve(routing, task_type=TT.TASK_TYPE_CODE_GENERATION, service=BADKEY, model="gpt-pin")
    assert (pinned.rule_id, pinned.target.service, pinned.target.model) == ("", BADKEY, "badkey/gpt-pin")
    by_model = await resolve(routing, model="down/gpt-z")
    assert (by_model.target.service, by_model.target.model) == (DOWN, "down/gpt-z")


async def test_execute_reports_route_usage_and_writes_one_ledger_row(routing: Stub, routed: ForgeApp) -> None:
    made = await rule(routing, task_type=TT.TASK_TYPE_SUMMARIZATION, service=FAKE, model="gpt-4o-mini")
    call = routing.ExecuteTask(
        routing_pb2.ExecuteTaskRequest(
            prompt="hello there world", task_type=TT.TASK_TYPE_SUMMARIZATION, service="auto", max_tokens=5
        ),
        metadata=(("x-request-id", "task-ok"),),
    )
    answer = await call
    assert answer.status == "completed"
    assert answer.task_id == "task-ok"
    assert answer.result == "tok0 tok1 tok2 tok3 tok4 "
    assert (answer.service_used, answer.model_used, answer.rule_id) == (FAKE, "gpt-4o-mini", made.id)
    assert answer.usage.completion_tokens == 5 and answer.usage.prompt_tokens > 0
    assert answer.tokens_used == answer.usage.total_tokens
    assert answer.cost == pytest.approx(answer.usage.cost_usd) and answer.cost > 0  # gpt-4o-mini has a price
    assert answer.execution_time > 0
    assert answer.attempts == 1
    assert answer.deployment == "fake-any-0"  # the catalog's id of the `fake/*` deployment
    trailing = dict(await call.trailing_metadata())
    assert (trailing["x-forge-service"], trailing["x-forge-rule"]) == (FAKE, made.id)
    (row,) = await ledger_rows(routed, "task-ok")
    assert row["status"] == "completed"
    assert (row["model"], row["provider"]) == ("gpt-4o-mini", "openai")
    assert (row["prompt_tokens"], row["completion_tokens"]) == (answer.usage.prompt_tokens, 5)


async def test_fallbacks_take_over_when_the_target_is_unavailable(
    routing: Stub, routed: ForgeApp, fake: FakeUpstream
) -> None:
    made = await rule(
        routing,
        task_type=TT.TASK_TYPE_TRANSLATION,
        service=DOWN,
        model="gpt-x",
        fallbacks=[
            routing_pb2.RouteTarget(service=FAKE, model=fake_model("gpt-y", fail=503, tag="fb-503")),
            routing_pb2.RouteTarget(service=FAKE, model=fake_model("gpt-4o-mini", tag="fb-ok")),
        ],
    )
    plan = await resolve(routing, task_type=TT.TASK_TYPE_TRANSLATION)
    assert (plan.target.service, [f.service for f in plan.fallbacks]) == (DOWN, [FAKE, FAKE])
    answer = await routing.ExecuteTask(
        routing_pb2.ExecuteTaskRequest(prompt="translate me", task_type=TT.TASK_TYPE_TRANSLATION),
        metadata=(("x-request-id", "task-fallback"),),
    )
    assert (answer.rule_id, answer.service_used) == (made.id, FAKE)
    assert answer.model_used.startswith("gpt-4o-mini")
    assert answer.attempts >= 3  # the unreachable target, the one answering 503, then the one that worked
    assert await fake.requests("fb-503") and await fake.requests("fb-ok")
    (row,) = await ledger_rows(routed, "task-fallback")
    assert row["status"] == "completed"


async def test_a_failure_the_caller_must_fix_does_not_fall_back(routing: Stub, routed: ForgeApp) -> None:
    await rule(
        routing,
        task_type=TT.TASK_TYPE_REASONING,
        service=BADKEY,
        model="gpt-x",
        fallbacks=[routing_pb2.RouteTarget(service=FAKE, model="gpt-4o-mini")],
    )
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await routing.ExecuteTask(
            routing_pb2.ExecuteTaskRequest(prompt="think", task_type=TT.TASK_TYPE_REASONING),
            metadata=(("x-request-id", "task-badkey"),),
        )
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION  # the upstream rejected forge's key
    (row,) = await ledger_rows(routed, "task-badkey")
    assert (row["status"], row["error_reason"]) == ("failed", "PROVIDER_AUTH")


@pytest.mark.parametrize(
    ("fields", "code"),
    [
        ({"prompt": ""}, grpc.StatusCode.INVALID_ARGUMENT),
        ({"prompt": "x", "temperature": 3.5}, grpc.StatusCode.INVALID_ARGUMENT),
        ({"prompt": "x", "max_tokens": 0}, grpc.StatusCode.INVALID_ARGUMENT),
        ({"prompt": "x", "task_type": 42}, grpc.StatusCode.INVALID_ARGUMENT),
        ({"prompt": "x", "service": "nowhere"}, grpc.StatusCode.NOT_FOUND),
        ({"prompt": "x", "model": "no-such-model"}, grpc.StatusCode.NOT_FOUND),
    ],
)
async def test_bad_requests(routing: Stub, fields: dict[str, object], code: grpc.StatusCode) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await routing.ExecuteTask(routing_pb2.ExecuteTaskRequest(**fields))  # type: ignore[arg-type]
    assert err.value.code() == code


async def test_a_rule_whose_targets_are_gone_says_so(fake: FakeUpstream, tmp_path: Path) -> None:
    """A rule naming a service a reload removed is passed over; with nothing left, the caller is told why.
    The change is made in the table, as another replica would, and seen within the refresh interval."""
    async with (
        running_forge(routing_config(fake, tmp_path, rule_cache_ttl_s=0.1), http=False) as app,
        grpc.aio.insecure_channel(f"127.0.0.1:{app.grpc_port}") as ch,
    ):
        stub = routing_pb2_grpc.RoutingServiceStub(ch)
        made = await rule(stub, task_type=TT.TASK_TYPE_CHAT, service=FAKE)
        assert app.pool is not None
        async with app.pool.connection() as conn:
            await conn.execute("UPDATE routing_rules SET service = 'retired' WHERE id = %s", (made.id,))
        deadline = time.monotonic() + 10
        with pytest.raises(grpc.aio.AioRpcError) as err:
            while True:  # answers from the cached rule until the refresh brings the change
                assert (await resolve(stub, task_type=TT.TASK_TYPE_CHAT)).target.service == FAKE
                assert time.monotonic() < deadline, "the change in the table never arrived"
                await asyncio.sleep(0.05)
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "retired: not configured" in (err.value.details() or "")


async def test_seed_execute_path(http: aiohttp.ClientSession) -> None:
    async with http.post("/api/routing/rules/", json={"task_type": "code_generation", "service": FAKE}) as resp:
        assert resp.status == 200
    body = {
        "prompt": "Explain quantum computing",
        "task_type": "code_generation",
        "max_tokens": 3,
        "temperature": 0.7,
        "service": "auto",
    }
    async with http.post("/api/tasks/execute/", json=body) as resp:
        assert resp.status == 200, await resp.text()
        answer = await resp.json()
    assert answer["status"] == "completed"
    assert answer["result"] == "tok0 tok1 tok2 "
    assert answer["service_used"] == FAKE and answer["model_used"] == "fake"  # the service's default model
    assert int(answer["tokens_used"]) > 3 and answer["execution_time"] > 0 and "cost" in answer
    async with http.post("/api/tasks/execute/", json={"prompt": "", "service": "auto"}) as resp:
        assert resp.status == 400
        assert (await resp.json())["code"] == "INVALID_ARGUMENT"
