"""Every generation writes exactly one usage row keyed by request id: completed, cancelled (partial usage) or
failed — through the real chat path into the real ledger table."""

from __future__ import annotations

from typing import Any

import grpc
import pytest
from forge.chat.v1 import chat_pb2, chat_pb2_grpc

from forge_rpc.server.app import ForgeApp
from tests.fakes import FakeUpstream, fake_model
from tests.rpc.test_chat import request

pytestmark = pytest.mark.asyncio


async def ledger_rows(app: ForgeApp, request_id: str) -> list[dict[str, Any]]:
    assert app.ledger is not None
    assert app.pool is not None
    await app.ledger.flush()
    async with app.pool.connection() as conn, conn.cursor() as cur:
        await cur.execute(
            "SELECT status, model, provider, prompt_tokens, completion_tokens, error_reason, ttft_ms, latency_ms"
            " FROM usage_ledger WHERE request_id = %s",
            (request_id,),
        )
        names = [d.name for d in cur.description or ()]
        return [dict(zip(names, row, strict=True)) for row in await cur.fetchall()]


async def test_completed_stream_writes_one_row(forge: ForgeApp, channel: grpc.aio.Channel) -> None:
    stub = chat_pb2_grpc.ChatServiceStub(channel)
    chat = request(fake_model("fake/gpt-fake", tokens=6))
    events = [e async for e in stub.StreamChatCompletion(
        chat_pb2.StreamChatCompletionRequest(chat=chat), metadata=(("x-request-id", "ledger-ok"),)
    )]  # fmt: skip
    assert events[-1].WhichOneof("event") == "finish"
    (row,) = await ledger_rows(forge, "ledger-ok")
    assert row["status"] == "completed"
    assert (row["prompt_tokens"], row["completion_tokens"]) == (3, 6)
    assert row["provider"] == "openai"
    assert row["ttft_ms"] is not None
    assert row["latency_ms"] >= row["ttft_ms"]


async def test_cancelled_stream_keeps_partial_usage(
    forge: ForgeApp, channel: grpc.aio.Channel, fake: FakeUpstream
) -> None:
    stub = chat_pb2_grpc.ChatServiceStub(channel)
    call = stub.StreamChatCompletion(
        chat_pb2.StreamChatCompletionRequest(
            chat=request(fake_model("fake/gpt-fake", tokens=500, gap_ms=10, tag="ledger-cancel"))
        ),
        metadata=(("x-request-id", "ledger-cancel"),),
    )
    for _ in range(3):
        await call.read()
    call.cancel()
    await fake.wait_closed("ledger-cancel")
    rows: list[dict[str, Any]] = []
    for _ in range(100):  # the server notices the cancel on its own schedule; the row follows it
        if rows := await ledger_rows(forge, "ledger-cancel"):
            break
    (row,) = rows
    assert row["status"] == "cancelled"
    assert 3 <= row["completion_tokens"] < 500
    assert row["prompt_tokens"] > 0


async def test_failed_call_writes_a_failed_row_with_the_reason(forge: ForgeApp, channel: grpc.aio.Channel) -> None:
    stub = chat_pb2_grpc.ChatServiceStub(channel)
    with pytest.raises(grpc.aio.AioRpcError):
        await stub.CreateChatCompletion(
            chat_pb2.CreateChatCompletionRequest(chat=request(fake_model("fake/gpt-fake", fail=429))),
            metadata=(("x-request-id", "ledger-429"),),
        )
    (row,) = await ledger_rows(forge, "ledger-429")
    assert row["status"] == "failed"
    assert row["error_reason"] == "PROVIDER_RATE_LIMITED"


async def test_a_retried_request_id_is_counted_once(forge: ForgeApp, channel: grpc.aio.Channel) -> None:
    stub = chat_pb2_grpc.ChatServiceStub(channel)
    for _ in range(2):
        await stub.CreateChatCompletion(
            chat_pb2.CreateChatCompletionRequest(chat=request(fake_model("fake/gpt-fake", tokens=2))),
            metadata=(("x-request-id", "ledger-retry"),),
        )
    assert len(await ledger_rows(forge, "ledger-retry")) == 1
