"""coalesce(): deltas waiting while the consumer is busy are merged; nothing is lost, delayed or leaked."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from forge_rpc.domain import Finished, FinishReason, ProviderEvent, TextDelta, coalesce


async def burst(n: int, closed: list[bool], fail: bool = False) -> AsyncIterator[ProviderEvent]:
    try:
        for i in range(n):
            yield TextDelta(f"t{i} ")
            await asyncio.sleep(0)
        if fail:
            raise RuntimeError("cut")
        yield Finished(FinishReason.STOP)
    finally:
        closed.append(True)


async def test_slow_consumer_gets_merged_deltas_and_every_token() -> None:
    closed: list[bool] = []
    out: list[ProviderEvent] = []
    async for event in coalesce(burst(200, closed)):
        out.append(event)
        await asyncio.sleep(0.005)  # the consumer is slower than the producer
    texts = [e for e in out if isinstance(e, TextDelta)]
    assert "".join(t.text for t in texts) == "".join(f"t{i} " for i in range(200))
    assert sum(t.chunks for t in texts) == 200
    assert len(texts) < 50
    assert isinstance(out[-1], Finished)
    assert closed == [True]


async def test_fast_consumer_gets_each_delta_at_once() -> None:
    async def paced() -> AsyncIterator[ProviderEvent]:
        for i in range(5):
            await asyncio.sleep(0.01)
            yield TextDelta(str(i))

    out = [e async for e in coalesce(paced())]
    assert [e.text for e in out if isinstance(e, TextDelta)] == ["0", "1", "2", "3", "4"]


async def test_failure_arrives_after_what_was_received() -> None:
    closed: list[bool] = []
    seen = ""
    with pytest.raises(RuntimeError, match="cut"):
        async for event in coalesce(burst(10, closed, fail=True)):
            if isinstance(event, TextDelta):
                seen += event.text
    assert seen == "".join(f"t{i} " for i in range(10))


async def test_consumer_leaving_closes_the_source() -> None:
    closed: list[bool] = []

    async def endless() -> AsyncIterator[ProviderEvent]:
        try:
            while True:
                await asyncio.sleep(0.001)
                yield TextDelta("x")
        finally:
            closed.append(True)

    stream = coalesce(endless())
    await anext(stream)
    await stream.aclose()  # type: ignore[attr-defined]
    assert closed == [True]
