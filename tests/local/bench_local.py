"""Measures the local model on this machine: load time, time to first token cold and warm, decode tokens/s
(in process and through gRPC), how long the worker runs on after a cancel, and event-loop lag while it generates.

    uv run python -m tests.local.bench_local
"""

from __future__ import annotations

import asyncio
import statistics
import tempfile
import time
from pathlib import Path

import grpc
from forge.chat.v1 import chat_pb2, chat_pb2_grpc

from forge_rpc.adapters.providers.local_llama import LOCAL_MODEL_NAME, LocalLlamaProvider, local_provider_if_available
from forge_rpc.domain import ChatMessage, ChatParams, TextDelta
from forge_rpc.server.app import build
from forge_rpc.server.config import ForgeConfig, GrpcConfig, HttpConfig, ProvidersConfig

PROMPT = "Write a long story about a lighthouse keeper."
RUNS = 5


def params(prompt: str = PROMPT) -> ChatParams:
    return ChatParams(LOCAL_MODEL_NAME, [ChatMessage("user", prompt)], temperature=0.0, max_tokens=128)


async def one_stream(provider: LocalLlamaProvider, prompt: str = PROMPT) -> tuple[float, float, int]:
    """(time to first token s, decode tokens/s after the first, tokens)."""
    started = time.perf_counter()
    first = 0.0
    tokens = 0
    async for event in provider.stream("", params(prompt), None):
        if isinstance(event, TextDelta):
            if not tokens:
                first = time.perf_counter() - started
            tokens += event.chunks
    total = time.perf_counter() - started
    return first, (tokens - 1) / (total - first), tokens


async def grpc_stream(stub: chat_pb2_grpc.ChatServiceAsyncStub) -> tuple[float, float, int]:
    request = chat_pb2.ChatRequest(
        model=LOCAL_MODEL_NAME,
        messages=[chat_pb2.Message(role="user", content=PROMPT)],
        temperature=0.0,
        max_tokens=128,
    )
    started = time.perf_counter()
    first = 0.0
    tokens = 0
    async for event in stub.StreamChatCompletion(chat_pb2.StreamChatCompletionRequest(chat=request)):
        if event.WhichOneof("event") == "delta":
            if not first:
                first = time.perf_counter() - started
            tokens = event.running_usage.completion_tokens
    total = time.perf_counter() - started
    return first, (tokens - 1) / (total - first), tokens


async def loop_lag_while(work: asyncio.Task[object]) -> float:
    """The worst extra delay of a 5 ms sleep on the event loop while `work` runs, in ms."""
    worst = 0.0
    while not work.done():
        started = time.perf_counter()
        await asyncio.sleep(0.005)
        worst = max(worst, time.perf_counter() - started - 0.005)
    return worst * 1000


def report(label: str, runs: list[tuple[float, float, int]]) -> None:
    ttft = statistics.median(r[0] for r in runs) * 1000
    rate = statistics.median(r[1] for r in runs)
    print(
        f"{label}: ttft median {ttft:.0f} ms, decode {rate:.0f} tokens/s ({runs[0][2]} tokens a run, {len(runs)} runs)"
    )


async def main() -> None:
    started = time.perf_counter()
    cold = local_provider_if_available()
    assert cold is not None, "install the local extra first"
    first, rate, _ = await one_stream(cold)  # no warm-up: pays import, load and first-compute allocation
    print(f"cold first request (import + load + generate): ttft {first * 1000:.0f} ms, decode {rate:.0f} tokens/s")
    await cold.close()
    print(f"  (process start to here {time.perf_counter() - started:.2f}s)")

    provider = local_provider_if_available()
    assert provider is not None
    started = time.perf_counter()
    await asyncio.wrap_future(provider.warm_up())
    print(f"warm-up (load + one-token prime), model already imported: {time.perf_counter() - started:.2f}s")
    # A new prompt each run evaluates all of it (after the template's cached system prefix); the same prompt again
    # finds it in llama.cpp's KV cache and evaluates one token.
    report("warm, in process, new prompt", [await one_stream(provider, f"{PROMPT} #{i}") for i in range(RUNS)])
    report("warm, in process, same prompt", [await one_stream(provider) for _ in range(RUNS)])

    # Outside pytest there is no session database: forge runs its own embedded one in a throwaway directory.
    config = ForgeConfig(
        data_dir=Path(tempfile.mkdtemp()),
        grpc=GrpcConfig(host="127.0.0.1", port=0),
        http=HttpConfig(host="127.0.0.1", port=0),
        providers=ProvidersConfig(discover_ollama=False, local_model=False),
    )
    app = build(config, local=provider)
    await app.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{app.grpc_port}") as channel:
            stub = chat_pb2_grpc.ChatServiceStub(channel)
            report("warm, through gRPC", [await grpc_stream(stub) for _ in range(RUNS)])
            lag = await loop_lag_while(asyncio.create_task(grpc_stream(stub)))
            print(f"event-loop lag while generating: worst {lag:.1f} ms over a 5 ms sleep")
            stops = []
            for _ in range(RUNS):
                request = chat_pb2.StreamChatCompletionRequest(
                    chat=chat_pb2.ChatRequest(
                        model=LOCAL_MODEL_NAME,
                        messages=[chat_pb2.Message(role="user", content=PROMPT)],
                        max_tokens=256,
                    )
                )
                call = stub.StreamChatCompletion(request)
                await call.read()
                cancelled = time.perf_counter()
                call.cancel()
                await provider.until_idle()
                stops.append((time.perf_counter() - cancelled) * 1000)
            print(f"cancel → worker stopped: median {statistics.median(stops):.1f} ms, worst {max(stops):.1f} ms")
    finally:
        await app.stop(0.5)


if __name__ == "__main__":
    asyncio.run(main())
