"""Spend budgets through a real forge, both backends: the estimated cost is reserved up front, so requests in
flight together cannot overspend, and settles free what a request did not use."""

from __future__ import annotations

import asyncio
import dataclasses

import grpc
import pytest
from forge.chat.v1 import chat_pb2, chat_pb2_grpc

from forge_rpc.domain.limits import Rates
from forge_rpc.server.config.usage import UsageConfig
from forge_rpc.testing import running_forge
from tests.fakes import FakeUpstream, fake_model
from tests.limits.conftest import limited
from tests.rpc.rich_status import reason

pytestmark = pytest.mark.asyncio

BUDGET = 0.0049
PRICE = 1e-4  # per token, in and out
REFUSED = "RESOURCE_EXHAUSTED BUDGET_EXCEEDED"
MODEL = fake_model("fake/gpt-fake", ttft_ms=300)  # slow enough that the concurrent requests overlap


async def test_concurrent_requests_cannot_overspend(fake: FakeUpstream, backend: str | None) -> None:
    config = limited(fake, backend, anonymous=Rates(budget_usd=BUDGET))
    config = dataclasses.replace(config, usage=UsageConfig(prices={MODEL.removeprefix("fake/"): (PRICE, PRICE)}))
    # Each request reserves (13 estimated prompt + 5 max_tokens) × 1e-4 = $0.0018 and really costs (3 + 5) × 1e-4.
    request = chat_pb2.CreateChatCompletionRequest(
        chat=chat_pb2.ChatRequest(
            model=MODEL, messages=[chat_pb2.Message(role="user", content="hello there world")], max_tokens=5
        )
    )
    spent: list[float] = []
    async with (
        running_forge(config, http=False) as app,
        grpc.aio.insecure_channel(f"127.0.0.1:{app.grpc_port}") as channel,
    ):
        stub = chat_pb2_grpc.ChatServiceStub(channel)

        async def call() -> str:
            try:
                reply = await stub.CreateChatCompletion(request)
            except grpc.aio.AioRpcError as err:
                return f"{err.code().name} {reason(err)}"
            spent.append(reply.usage.cost_usd)
            return "OK"

        outcomes = await asyncio.gather(*(call() for _ in range(10)))
        assert outcomes.count("OK") == 2  # a third $0.0018 reservation would pass $0.0049
        assert set(outcomes) == {"OK", REFUSED}
        assert spent == [pytest.approx(8 * PRICE)] * 2
        # Settled to $0.0008 each, the budget admits more, one at a time, until the next reservation would
        # exceed it: $0.0016 + $0.0018 fits, $0.0024 + $0.0018 fits, $0.0032 + $0.0018 does not.
        sequential = [await call() for _ in range(4)]
        assert sequential == ["OK", "OK", REFUSED, REFUSED]
    assert sum(spent) <= BUDGET
