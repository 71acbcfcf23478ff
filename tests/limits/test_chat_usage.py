"""What the chat servicer reports for the limits policy and the ledger, called as the pipeline calls it: the
call's `call_usage` (real tokens and cost, partial when cancelled) and the caller's user and key ids on the row."""

from __future__ import annotations

import uuid
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
from forge.chat.v1 import chat_pb2

from forge_rpc.adapters.accounting import PriceTable
from forge_rpc.adapters.store import create_pool, migrate
from forge_rpc.adapters.store.ledger import UsageLedger
from forge_rpc.domain import ForgeError
from forge_rpc.domain.identity import Principal, Role
from forge_rpc.server.compose_engine import build_engine
from forge_rpc.services.chat import ChatServicer
from forge_rpc.services.context import CallUsage, call_usage, principal, request_id, response_headers, trailing
from tests.fakes import FakeUpstream, fake_model
from tests.limits.conftest import call_context, limited

PRICE = 1e-4
WHO = Principal("user-7", Role.USER, api_key_id="key-3")


class Served:
    def __init__(self, servicer: ChatServicer, ledger: UsageLedger, pool: Any) -> None:
        self.servicer, self.ledger, self.pool = servicer, ledger, pool

    async def row(self, rid: str) -> dict[str, Any]:
        await self.ledger.flush()
        async with self.pool.connection() as conn, conn.cursor() as cur:
            await cur.execute(
                "SELECT status, user_id, api_key_id, prompt_tokens, completion_tokens, cost_usd, error_reason"
                " FROM usage_ledger WHERE request_id = %s",
                (rid,),
            )
            names = [d.name for d in cur.description or ()]
            (row,) = await cur.fetchall()
            return dict(zip(names, row, strict=True))


@pytest_asyncio.fixture
async def served(fake: FakeUpstream) -> AsyncIterator[Served]:
    config = limited(fake)
    url = config.storage.database_url
    assert url is not None
    directory, engine = build_engine(config, PriceTable({"gpt-fake": (PRICE, PRICE)}), None)
    await directory.refresh(force=True)
    await migrate(url)
    pool = create_pool(url, min_size=1, max_size=2, timeout_s=5.0)
    await pool.open(wait=True)
    ledger = UsageLedger()
    await ledger.start(pool)
    try:
        yield Served(ChatServicer(engine, ledger), ledger, pool)
    finally:
        await ledger.close()
        await pool.close()
        await directory.close()


def begin() -> tuple[str, CallUsage]:
    """What the pipeline sets before a servicer runs (the auth policy set the principal)."""
    rid = uuid.uuid4().hex
    request_id.set(rid)
    trailing.set([])
    response_headers.set([])
    usage = CallUsage()
    call_usage.set(usage)
    principal.set(WHO)
    return rid, usage


def chat(model: str = "fake", **kw: object) -> chat_pb2.ChatRequest:
    return chat_pb2.ChatRequest(
        model=model,
        messages=[chat_pb2.Message(role="user", content="hello there world")],
        **kw,  # type: ignore[arg-type]
    )


async def test_a_completed_call_reports_its_usage_and_caller(served: Served) -> None:
    rid, usage = begin()
    reply = await served.servicer.CreateChatCompletion(
        chat_pb2.CreateChatCompletionRequest(chat=chat("fake")), call_context()
    )
    assert (usage.prompt_tokens, usage.completion_tokens) == (3, 8)  # the fake's default answer
    assert usage.cost_usd == pytest.approx(11 * PRICE) == reply.usage.cost_usd
    assert usage.model == reply.model
    row = await served.row(rid)
    assert (row["status"], row["user_id"], row["api_key_id"]) == ("completed", "user-7", "key-3")
    assert float(row["cost_usd"]) == pytest.approx(11 * PRICE)


async def test_a_cancelled_stream_reports_its_partial_usage(served: Served) -> None:
    rid, usage = begin()
    request = chat_pb2.StreamChatCompletionRequest(chat=chat(fake_model("fake/gpt-fake", tokens=500, gap_ms=10)))
    events = served.servicer.StreamChatCompletion(request, call_context())
    assert isinstance(events, AsyncGenerator)
    for _ in range(3):
        assert (await anext(events)).WhichOneof("event") == "delta"
    await events.aclose()  # what a client that leaves does to the handler
    assert usage.prompt_tokens > 0 and 3 <= usage.completion_tokens < 500
    row = await served.row(rid)
    assert (row["status"], row["user_id"], row["api_key_id"]) == ("cancelled", "user-7", "key-3")
    assert row["completion_tokens"] == usage.completion_tokens


async def test_a_failed_call_reports_no_usage(served: Served) -> None:
    rid, usage = begin()
    with pytest.raises(ForgeError):
        await served.servicer.CreateChatCompletion(
            chat_pb2.CreateChatCompletionRequest(chat=chat("no-such-model")), call_context()
        )
    assert usage.total_tokens == 0 and usage.cost_usd == 0
    row = await served.row(rid)
    assert (row["status"], row["error_reason"], row["user_id"]) == ("failed", "MODEL_NOT_FOUND", "user-7")


async def test_each_batch_item_has_its_own_row_and_the_call_sums_them(served: Served) -> None:
    rid, usage = begin()
    request = chat_pb2.BatchCreateChatCompletionsRequest(
        requests=[chat(fake_model("fake/gpt-fake", tokens=2)), chat(fake_model("fake/gpt-fake", tokens=4))]
    )
    reply = await served.servicer.BatchCreateChatCompletions(request, call_context())
    assert [r.completion.id for r in reply.results] == [f"{rid}-0", f"{rid}-1"]
    assert (usage.prompt_tokens, usage.completion_tokens) == (6, 6)
    assert [(await served.row(f"{rid}-{i}"))["completion_tokens"] for i in (0, 1)] == [2, 4]
