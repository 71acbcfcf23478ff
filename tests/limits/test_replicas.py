"""Two forge processes sharing one Redis: a limit of N requests per minute admits exactly N across both, and a
stream slot taken on one replica is taken on the other. The second replica is a real `forge serve` process."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import grpc
import pytest
import yaml
from forge.chat.v1 import chat_pb2, chat_pb2_grpc
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc

from forge_rpc.domain.limits import Rates
from forge_rpc.testing import running_forge
from tests.conftest import storage_config
from tests.fakes import FakeUpstream, fake_model
from tests.limits.conftest import limited, unique_prefix
from tests.rpc.rich_status import detail

pytestmark = pytest.mark.asyncio

FORGE = str(Path(sys.executable).parent / "forge")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def until_serving(address: str, proc: asyncio.subprocess.Process, within_s: float = 60) -> None:
    deadline = asyncio.get_running_loop().time() + within_s
    async with grpc.aio.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while True:
            assert proc.returncode is None, "forge serve exited during start-up"
            try:
                reply = await stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=1)
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.aio.AioRpcError:
                pass
            assert asyncio.get_running_loop().time() < deadline, "forge serve never became SERVING"
            await asyncio.sleep(0.1)


@asynccontextmanager
async def forge_process(fake: FakeUpstream, redis_url: str, limits: dict[str, object], tmp: Path) -> AsyncIterator[str]:
    """`forge serve` in its own process, in front of the fake, sharing the tests' database and Redis."""
    config = tmp / "forge.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "model_list": [
                    {
                        "model_name": "fake/*",
                        "litellm_params": {"model": "openai/*", "api_base": fake.openai_base, "api_key": "sk-test"},
                    }
                ],
                "limits": limits,
            }
        )
    )
    env = {
        **os.environ,
        "FORGE_REDIS_URL": redis_url,
        "FORGE_DATABASE_URL": str(storage_config().database_url),
        "FORGE_LOCAL_MODEL": "0",
        "FORGE_DISCOVER_OLLAMA": "0",
        "FORGE_DATA_DIR": str(tmp / "data"),
        "FORGE_LOG_LEVEL": "WARNING",
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",
    }
    grpc_port = free_port()
    proc = await asyncio.create_subprocess_exec(
        FORGE, "serve", "--config", str(config), "--grpc-port", str(grpc_port), "--http-port", str(free_port()),
        env=env,
    )  # fmt: skip
    address = f"127.0.0.1:{grpc_port}"
    try:
        await until_serving(address, proc)
        yield address
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
            await asyncio.wait_for(proc.wait(), 20)


def chat(model: str = "fake/gpt-fake") -> chat_pb2.ChatRequest:
    return chat_pb2.ChatRequest(model=model, messages=[chat_pb2.Message(role="user", content="hello there world")])


async def test_two_replicas_admit_exactly_n_between_them(fake: FakeUpstream, redis_url: str, tmp_path: Path) -> None:
    prefix = unique_prefix()
    limits: dict[str, object] = {"anonymous": {"rpm": 5}, "key_prefix": prefix}
    inside = limited(fake, redis_url, anonymous=Rates(rpm=5), key_prefix=prefix)
    async with (
        running_forge(inside, http=False) as app,
        forge_process(fake, redis_url, limits, tmp_path) as other,
        grpc.aio.insecure_channel(f"127.0.0.1:{app.grpc_port}") as a,
        grpc.aio.insecure_channel(other) as b,
    ):
        stubs = [chat_pb2_grpc.ChatServiceStub(a), chat_pb2_grpc.ChatServiceStub(b)]

        async def call(i: int) -> tuple[grpc.StatusCode, int]:
            try:
                await stubs[i % 2].CreateChatCompletion(chat_pb2.CreateChatCompletionRequest(chat=chat()))
            except grpc.aio.AioRpcError as err:
                return err.code(), detail(err, error_details_pb2.RetryInfo).retry_delay.seconds
            return grpc.StatusCode.OK, 0

        outcomes = await asyncio.gather(*(call(i) for i in range(14)))
        codes = [code for code, _ in outcomes]
        assert codes.count(grpc.StatusCode.OK) == 5
        assert codes.count(grpc.StatusCode.RESOURCE_EXHAUSTED) == 9
        assert all(0 < delay <= 12 for code, delay in outcomes if code != grpc.StatusCode.OK)  # 60 s / 5
        # Both replicas refuse now, whichever admitted the five.
        for stub in stubs:
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await stub.CreateChatCompletion(chat_pb2.CreateChatCompletionRequest(chat=chat()))
            assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


async def test_a_stream_slot_is_shared_by_the_replicas(fake: FakeUpstream, redis_url: str, tmp_path: Path) -> None:
    prefix = unique_prefix()
    limits: dict[str, object] = {"anonymous": {"concurrent_streams": 1}, "key_prefix": prefix}
    inside = limited(fake, redis_url, anonymous=Rates(concurrent_streams=1), key_prefix=prefix)
    async with (
        running_forge(inside, http=False) as app,
        forge_process(fake, redis_url, limits, tmp_path) as other,
        grpc.aio.insecure_channel(f"127.0.0.1:{app.grpc_port}") as a,
        grpc.aio.insecure_channel(other) as b,
    ):
        slow = chat_pb2.StreamChatCompletionRequest(chat=chat(fake_model("fake/gpt-fake", tokens=30, gap_ms=20)))
        first = chat_pb2_grpc.ChatServiceStub(a).StreamChatCompletion(slow)
        await first.read()
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            async for _ in chat_pb2_grpc.ChatServiceStub(b).StreamChatCompletion(slow):
                pass
        assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        while await first.read() is not grpc.aio.EOF:
            pass
        events = [e async for e in chat_pb2_grpc.ChatServiceStub(b).StreamChatCompletion(slow)]
        assert events[-1].WhichOneof("event") == "finish"
