"""Chat benchmarks: forge (gRPC stream, OpenAI edge in process, edge and core split) against reading the
fake upstream directly, measured in the same run. Run on demand:

    uv run python -m tests.bench.bench_chat [--via grpc edge split] [--quick]

Prints ratios and added latencies; quote medians (the machines are shared and noisy).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable

import aiohttp
from forge.chat.v1 import chat_pb2_grpc

from tests.bench.harness import (
    Forge,
    StreamTiming,
    bare_grpc_process,
    cpu_seconds,
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


async def bare_burst(stub: chat_pb2_grpc.ChatServiceAsyncStub, model: str, n: int) -> int:
    """The paced burst against the bare server; the tokens it streamed."""
    _, _, tokens = await paced_streams(lambda m: grpc_stream(stub, m), model, n)
    return tokens


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
    p50s, p99s, gap99s, cpus, fake_cpus, bare_cpus = [], [], [], [], [], []
    async with contextlib.AsyncExitStack() as stack:
        # The gRPC path's floor: a bare grpc.aio server streaming the same paced tokens, in its own process.
        bare = await stack.enter_async_context(bare_grpc_process()) if name == "grpc" else None
        bare_channel = await stack.enter_async_context(grpc_channel(bare.grpc_address)) if bare else None
        for _ in range(rounds):
            fake0 = cpu_seconds(fake.pid)
            d_ttft, d_gaps, d_tokens = await paced_streams(direct, paced, n)
            fake_cpus.append(1000 * (cpu_seconds(fake.pid) - fake0) / d_tokens * 1000)
            cpu0 = forge.cpu()
            f_ttft, f_gaps, tokens = await paced_streams(via, paced, n)
            cpus.append(1000 * (forge.cpu() - cpu0) / tokens * 1000)
            p50s.append(1000 * (pct(f_ttft, 0.5) - pct(d_ttft, 0.5)))
            p99s.append(1000 * (pct(f_ttft, 0.99) - pct(d_ttft, 0.99)))
            gap99s.append(1000 * (pct(f_gaps, 0.99) - pct(d_gaps, 0.99)))
            if bare_channel is not None and bare is not None:
                cpu0 = bare.cpu()
                b_tokens = await bare_burst(chat_pb2_grpc.ChatServiceStub(bare_channel), paced, n)
                bare_cpus.append(1000 * (bare.cpu() - cpu0) / b_tokens * 1000)
    print(
        f"  {n} streams paced 20 ms, median of {rounds} bursts: added TTFT p50 {spread(p50s, '.1f')} ms, "
        f"p99 {spread(p99s, '.1f')} ms; added gap p99 {spread(gap99s, '.1f')} ms; "
        f"forge CPU {spread(cpus, '.0f')} ms per 1,000 tokens"
    )
    # The same run's yardstick for CPU: what the fake upstream (an aiohttp server writing the same SSE) spent per
    # 1,000 tokens served directly. Absolute CPU figures drift with the host's load; this ratio drifts less.
    relative = [c / f for c, f in zip(cpus, fake_cpus, strict=True)]
    print(f"    fake upstream CPU {spread(fake_cpus, '.0f')} ms per 1,000 tokens; forge/fake {spread(relative, '.2f')}")
    if bare_cpus:
        floor = [c / b for c, b in zip(cpus, bare_cpus, strict=True)]
        bare_line = f"bare grpc.aio server CPU {spread(bare_cpus, '.0f')} ms per 1,000 tokens"
        print(f"    {bare_line}; forge/bare {spread(floor, '.2f')}")

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
