"""Clients that walk away never take the server down. A storm of streams cancelled mid-flight, against `forge serve`
in its own process, so a crash is a failed assertion rather than a dead test run. (grpcio's `peer()` on a cancelled
call reads freed memory: forge read it while recording a cancelled call's usage, and crashed.)"""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest
from forge.chat.v1 import chat_pb2, chat_pb2_grpc

from tests.e2e.forge_process import ForgeProcess
from tests.fakes import FakeUpstream, fake_model
from tests.rpc.test_chat import request

pytestmark = pytest.mark.asyncio

ROUNDS, WIDE = 120, 5


async def test_streams_cancelled_mid_flight_never_crash_the_server(fake: FakeUpstream, tmp_path: Path) -> None:
    env = {"OLLAMA_HOST": fake.base_url, "FORGE_DATA_DIR": str(tmp_path)}
    process = ForgeProcess(env)
    async with process, grpc.aio.insecure_channel(process.address) as channel:
        stub = chat_pb2_grpc.ChatServiceStub(channel)
        slow = chat_pb2.StreamChatCompletionRequest(chat=request(fake_model("ollama/llama3.2", tokens=200, gap_ms=2)))
        for _ in range(ROUNDS):
            calls = [stub.StreamChatCompletion(slow) for _ in range(WIDE)]
            for call in calls:
                await call.read()
            for call in calls:
                call.cancel()
        quick = chat_pb2.CreateChatCompletionRequest(chat=request(fake_model("ollama/llama3.2", tokens=3)))
        reply = await stub.CreateChatCompletion(quick, timeout=10)
        assert reply.choices[0].message.content
    assert await process.stop() == 0, "".join(process.stderr[-30:])
    assert "Traceback" not in "".join(process.stderr)
