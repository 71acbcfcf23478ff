"""Chat benchmarks: forge (gRPC stream, OpenAI edge in process, edge and core split) against reading the
fake upstream directly, measured in the same run. Run on demand:

    uv run python -m tests.bench.bench_chat [--via grpc edge split] [--quick]

Prints ratios and added latencies; quote medians (the machines are shared and noisy).
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Awaitable, Callable

import aiohttp
from forge.chat.v1 import chat_pb2_grpc

from tests.bench.harness import (
    Forge,
    StreamTiming,
    forge_process,
    grpc_channel,
    grpc_stream,
    grpc_unary,
    median,
    pct,
    sse_stream,
    sse_unary,
)
from tests.fakes import FakeUpstream, fake_model

Stream = Callable[[str], Awaitable[StreamTiming]]
Unary = Callable[[str], Awaitable[None]]


async def single_stream(run: Stream, model: str, repeats: int) -> float:
    """Median tokens/s of one 512-token unpaced stream."""
    rates = []
    for _ in range(repeats):
        t = await run(model)
        rates.append(t.tokens / (t.arrivals[-1] - t.start))
    return median(rates)


async def paced_streams(run: Stream, model: str, n: int) -> tuple[list[float], list[float], int]:
    timings = await asyncio.gather(*(run(model) for _ in range(n)))
    ttfts = [t.ttft for t in timings]
    gaps = [g for t in timings for g in t.gaps() if g > 0]  # merged tokens arrive together: gap 0 is not a gap
    return ttfts, gaps, sum(t.tokens for t in timings)


def spread(values: list[float], fmt: str) -> str:
    """The median, then the range in brackets."""
    return f"{median(values):{fmt}} ({min(values):{fmt}}..{max(values):{fmt}})"


async def unary_rate(call: Unary, model: str, workers: int, seconds: float) -> float:
    done = 0
    deadline = time.perf_counter() + seconds

    async def worker() -> None:
        nonlocal done
        while time.perf_counter() < deadline:
            await call(model)
            done += 1

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(workers)))
    return done / (time.perf_counter() - started)


async def run_path(name: str, fake: FakeUpstream, forge: Forge, quick: bool) -> None:
    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
    channel = grpc_channel(forge.grpc_address)
    stub: chat_pb2_grpc.ChatServiceAsyncStub = chat_pb2_grpc.ChatServiceStub(channel)
    direct_url = f"{fake.openai_base}/chat/completions"
    edge_url = f"{forge.http_base}/v1/chat/completions"

    async def direct(model: str) -> StreamTiming:
        return await sse_stream(session, direct_url, model)

    async def via(model: str) -> StreamTiming:
        if name == "grpc":
            return await grpc_stream(stub, "bench/" + model)
        return await sse_stream(session, edge_url, "bench/" + model)

    async def direct_unary(model: str) -> None:
        await sse_unary(session, direct_url, model)

    async def via_unary(model: str) -> None:
        if name == "grpc":
            await grpc_unary(stub, "bench/" + model)
        else:
            await sse_unary(session, edge_url, "bench/" + model)

    repeats = 3 if quick else 7
    print(f"\n== {name}")
    fast = fake_model("gpt-fake", tokens=512)
    await via(fast)  # warm connections and caches
    d, f = await single_stream(direct, fast, repeats), await single_stream(via, fast, repeats)
    print(f"  1 stream x 512 tokens unpaced: direct {d:,.0f} tok/s, forge {f:,.0f} tok/s, ratio {f / d:.2f}")

    # Bursts and unary rounds alternate direct and forge, and each pair gives one figure: a neighbour's noise then
    # lands on both sides of a pair, and the median over pairs is the number to quote.
    paced = fake_model("gpt-fake", tokens=64 if quick else 256, gap_ms=20)
    n, rounds = 64, 2 if quick else 5
    p50s, p99s, gap99s, cpus = [], [], [], []
    for _ in range(rounds):
        d_ttft, d_gaps, _ = await paced_streams(direct, paced, n)
        cpu0 = forge.cpu()
        f_ttft, f_gaps, tokens = await paced_streams(via, paced, n)
        cpus.append(1000 * (forge.cpu() - cpu0) / tokens * 1000)
        p50s.append(1000 * (pct(f_ttft, 0.5) - pct(d_ttft, 0.5)))
        p99s.append(1000 * (pct(f_ttft, 0.99) - pct(d_ttft, 0.99)))
        gap99s.append(1000 * (pct(f_gaps, 0.99) - pct(d_gaps, 0.99)))
    print(
        f"  {n} streams paced 20 ms, median of {rounds} bursts: added TTFT p50 {spread(p50s, '.1f')} ms, "
        f"p99 {spread(p99s, '.1f')} ms; added gap p99 {spread(gap99s, '.1f')} ms; "
        f"forge CPU {spread(cpus, '.0f')} ms per 1,000 tokens"
    )

    small = fake_model("gpt-fake", tokens=16)
    seconds = 1.0 if quick else 2.0
    ratios = []
    for _ in range(rounds):
        d_rate = await unary_rate(direct_unary, small, 32, seconds)
        f_rate = await unary_rate(via_unary, small, 32, seconds)
        ratios.append(f_rate / d_rate)
    print(f"  unary x32 concurrent, 16 tokens, median of {rounds} rounds: ratio {spread(ratios, '.2f')}")
    await channel.close()
    await session.close()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--via", nargs="+", default=["grpc", "edge", "split"], choices=["grpc", "edge", "split"])
    parser.add_argument("--quick", action="store_true", help="fewer repeats and shorter streams")
    ns = parser.parse_args()
    async with FakeUpstream() as fake:
        for name in ns.via:
            async with forge_process(fake, split=name == "split") as forge:
                await run_path(name, fake, forge, ns.quick)


if __name__ == "__main__":
    asyncio.run(main())
