"""Benchmark plumbing: the fake upstream and a real `forge serve` in their own processes, CPU read from /proc,
and the three client paths (direct to the upstream, forge's gRPC stream, forge's OpenAI edge)."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import grpc
import orjson
from forge.chat.v1 import chat_pb2, chat_pb2_grpc

from tests.fakes import FakeUpstream

FORGE = str(Path(sys.executable).parent / "forge")
TICKS = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process (and its reaped children) from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return sum(int(x) for x in fields[11:15]) / TICKS


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


@dataclass
class Forge:
    pid: int
    grpc_address: str
    http_base: str

    def cpu(self) -> float:
        return cpu_seconds(self.pid)


@asynccontextmanager
async def forge_process(fake: FakeUpstream, *, split: bool = False) -> AsyncIterator[Forge]:
    """`forge serve` with one model `bench` → the fake; with `split`, a second process runs the edge alone."""
    config = Path(tempfile.mkdtemp()) / "forge.yaml"
    config.write_text(
        "model_list:\n"
        "  - model_name: 'bench/*'\n"
        f"    litellm_params: {{model: 'openai/*', api_base: '{fake.openai_base}', api_key: k}}\n"
        "providers: {discover_ollama: false}\n"
    )
    env = {
        **os.environ,
        "FORGE_LOG_LEVEL": "WARNING",
        "FORGE_LOCAL_MODEL": "0",
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",
        "FORGE_DATA_DIR": str(config.parent / "data"),
    }
    grpc_port, http_port = free_port(), free_port()
    procs = []
    core = await asyncio.create_subprocess_exec(
        FORGE, "serve", "--config", str(config), "--grpc-port", str(grpc_port), "--http-port", str(http_port),
        *(["--no-http"] if split else []), env=env,
    )  # fmt: skip
    procs.append(core)
    measured = core
    if split:
        edge = await asyncio.create_subprocess_exec(
            FORGE, "serve", "--config", str(config), "--http-port", str(http_port),
            "--core-address", f"127.0.0.1:{grpc_port}", env=env,
        )  # fmt: skip
        procs.append(edge)
    try:
        await _wait_http(f"http://127.0.0.1:{http_port}/health", grpc_port)
        yield Forge(measured.pid, f"127.0.0.1:{grpc_port}", f"http://127.0.0.1:{http_port}")
        if split:
            print(f"    (edge process CPU so far: {cpu_seconds(procs[1].pid):.2f}s)")
    finally:
        for p in procs:
            if p.returncode is None:
                p.send_signal(signal.SIGTERM)
        for p in procs:
            await p.wait()


@asynccontextmanager
async def bare_grpc_process() -> AsyncIterator[Forge]:
    """tests/bench/bare_grpc.py in its own process: the gRPC floor, measured like forge (only `grpc_address`)."""
    port = free_port()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.bench.bare_grpc", str(port), stdout=asyncio.subprocess.PIPE
    )
    try:
        assert proc.stdout is not None
        assert (await asyncio.wait_for(proc.stdout.readline(), 30)).strip() == b"ready"
        yield Forge(proc.pid, f"127.0.0.1:{port}", "")
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
        await proc.wait()


async def _wait_http(url: str, grpc_port: int) -> None:
    deadline = time.monotonic() + 60
    async with aiohttp.ClientSession() as s:
        while time.monotonic() < deadline:
            try:
                async with s.get(url) as r:
                    if r.status < 500:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)
    raise RuntimeError("forge did not start")


@dataclass
class StreamTiming:
    start: float
    arrivals: list[float] = field(default_factory=list)
    tokens: int = 0

    @property
    def ttft(self) -> float:
        return self.arrivals[0] - self.start

    def gaps(self) -> list[float]:
        return [b - a for a, b in zip(self.arrivals, self.arrivals[1:], strict=False)]


def _count_sse_tokens(payload: bytes) -> int:
    n = 0
    for line in payload.split(b"\n"):
        if line.startswith(b"data: {"):
            chunk = orjson.loads(line[6:])
            for c in chunk.get("choices") or ():
                content = (c.get("delta") or {}).get("content")
                if content:
                    n += content.count("tok")
    return n


async def sse_stream(session: aiohttp.ClientSession, url: str, model: str) -> StreamTiming:
    """Reads an OpenAI chat stream (direct from the fake, or through forge's edge)."""
    body = {"model": model, "messages": [{"role": "user", "content": "hi"}], "stream": True}
    t = StreamTiming(time.perf_counter())
    async with session.post(url, json=body) as resp:
        assert resp.status == 200, await resp.text()
        pending = b""
        async for data in resp.content.iter_any():
            lines = (pending + data).rsplit(b"\n", 1)
            pending = lines[1] if len(lines) > 1 else lines[0]
            complete = lines[0] if len(lines) > 1 else b""
            n = _count_sse_tokens(complete)
            if n:
                now = time.perf_counter()
                t.arrivals.extend([now] * n)
                t.tokens += n
    return t


async def grpc_stream(stub: chat_pb2_grpc.ChatServiceAsyncStub, model: str) -> StreamTiming:
    chat = chat_pb2.ChatRequest(model=model, messages=[chat_pb2.Message(role="user", content="hi")])
    t = StreamTiming(time.perf_counter())
    async for event in stub.StreamChatCompletion(chat_pb2.StreamChatCompletionRequest(chat=chat)):
        if event.WhichOneof("event") == "delta":
            n = event.delta.content.count("tok")
            now = time.perf_counter()
            t.arrivals.extend([now] * n)
            t.tokens += n
    return t


async def sse_unary(session: aiohttp.ClientSession, url: str, model: str) -> None:
    body = {"model": model, "messages": [{"role": "user", "content": "hi"}]}
    async with session.post(url, json=body) as resp:
        assert resp.status == 200, await resp.text()
        await resp.read()


async def grpc_unary(stub: chat_pb2_grpc.ChatServiceAsyncStub, model: str) -> None:
    chat = chat_pb2.ChatRequest(model=model, messages=[chat_pb2.Message(role="user", content="hi")])
    await stub.CreateChatCompletion(chat_pb2.CreateChatCompletionRequest(chat=chat))


def grpc_channel(address: str) -> grpc.aio.Channel:
    return grpc.aio.insecure_channel(address)


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")
