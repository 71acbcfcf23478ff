"""The server around the services: health per service, reflection for grpcurl, UNIMPLEMENTED with a clear
message, and graceful shutdown with a stream in flight."""

from __future__ import annotations

import asyncio
import json
import shutil
import sys
from pathlib import Path

import grpc
import pytest
from forge.chat.v1 import chat_pb2, chat_pb2_grpc
from forge.training.v1 import training_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc

from forge_rpc.server.app import ForgeApp
from forge_rpc.server.methods import build_method_table
from forge_rpc.server.services import SERVICES
from forge_rpc.testing import running_forge
from gateway.invoke import InvokeError, LocalInvoker
from tests.conftest import forge_config
from tests.fakes import FakeUpstream, fake_model
from tests.rpc.test_chat import request

pytestmark = pytest.mark.asyncio

GRPCURL = shutil.which("grpcurl") or str(Path(sys.executable).parent / "grpcurl")
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


async def grpcurl(port: int, *args: str, flags: tuple[str, ...] = ()) -> str:
    proc = await asyncio.create_subprocess_exec(
        GRPCURL, "-plaintext", *flags, f"127.0.0.1:{port}", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()
    return out.decode()


async def health_of(channel: grpc.aio.Channel, service: str) -> int:
    stub = health_pb2_grpc.HealthStub(channel)
    reply = await stub.Check(health_pb2.HealthCheckRequest(service=service))
    return int(reply.status)


async def test_grpcurl_lists_every_service_health_and_reflection(forge: ForgeApp) -> None:
    listed = set((await grpcurl(forge.grpc_port, "list")).split())
    assert set(SERVICES) <= listed
    assert {"grpc.health.v1.Health", "grpc.reflection.v1alpha.ServerReflection"} <= listed


async def test_grpcurl_describes_and_calls_a_stream(forge: ForgeApp) -> None:
    described = await grpcurl(forge.grpc_port, "describe", "forge.chat.v1.ChatService")
    assert "rpc StreamChatCompletion" in described and "stream .forge.chat.v1.ChatEvent" in described
    body = json.dumps({"chat": {"model": fake_model("fake/gpt-fake", tokens=3), "prompt": "hi"}})
    out = await grpcurl(forge.grpc_port, "forge.chat.v1.ChatService/StreamChatCompletion", flags=("-d", body))
    assert '"content": "tok0 ' in out and '"finish"' in out


async def test_health_per_service(channel: grpc.aio.Channel) -> None:
    assert await health_of(channel, "") == SERVING
    assert await health_of(channel, "forge.chat.v1.ChatService") == SERVING
    assert await health_of(channel, "forge.models.v1.ModelsService") == SERVING
    assert await health_of(channel, "forge.training.v1.TrainingService") == SERVING


async def test_every_rpc_of_the_contracts_is_served(forge: ForgeApp) -> None:
    missing = [name for name, m in forge.methods.items() if not m.implemented]
    assert missing == []


async def test_an_rpc_without_a_servicer_says_so_clearly() -> None:
    # A contract designed ahead of its implementation answers UNIMPLEMENTED naming where it is planned.
    service = SERVICES["forge.training.v1.TrainingService"]
    table = build_method_table({service: []}, {service.full_name: "issue #99"})
    assert not table["/forge.training.v1.TrainingService/DeployJob"].implemented
    invoker = LocalInvoker(table)
    with pytest.raises(InvokeError) as info:
        await invoker.unary(
            "/forge.training.v1.TrainingService/DeployJob", training_pb2.DeployJobRequest(job_id="job_x"), (), None
        )
    assert info.value.code == grpc.StatusCode.UNIMPLEMENTED
    assert "issue #99" in info.value.message
    assert info.value.status is not None and info.value.status.details  # google.rpc.Status with its ErrorInfo


async def test_graceful_shutdown_lets_a_stream_finish_and_reports_not_serving(fake: FakeUpstream) -> None:
    async with running_forge(forge_config(fake), grace=3.0) as app:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{app.grpc_port}") as ch:
            watch = health_pb2_grpc.HealthStub(ch).Watch(
                health_pb2.HealthCheckRequest(service="forge.chat.v1.ChatService")
            )
            assert (await watch.read()).status == SERVING
            stub = chat_pb2_grpc.ChatServiceStub(ch)
            call = stub.StreamChatCompletion(
                chat_pb2.StreamChatCompletionRequest(chat=request(fake_model("fake/gpt-fake", tokens=30, gap_ms=10)))
            )
            first = await call.read()
            assert isinstance(first, chat_pb2.ChatEvent)
            stopping = asyncio.create_task(app.stop(grace=3.0))
            assert (await watch.read()).status == NOT_SERVING
            events = [first]
            while (event := await call.read()) is not grpc.aio.EOF:
                assert isinstance(event, chat_pb2.ChatEvent)
                events.append(event)
            assert events[-1].WhichOneof("event") == "finish"
            assert "".join(e.delta.content for e in events).count("tok") == 30
            assert await call.code() == grpc.StatusCode.OK
            await stopping


async def test_shutdown_cancels_streams_after_the_grace_period(fake: FakeUpstream) -> None:
    async with running_forge(forge_config(fake)) as app:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{app.grpc_port}") as ch:
            stub = chat_pb2_grpc.ChatServiceStub(ch)
            tag = "grace-cut"
            call = stub.StreamChatCompletion(
                chat_pb2.StreamChatCompletionRequest(
                    chat=request(fake_model("fake/gpt-fake", tokens=1000, gap_ms=20, tag=tag))
                )
            )
            await call.read()
            await app.stop(grace=0.2)
            with pytest.raises(grpc.aio.AioRpcError):
                while await call.read() is not grpc.aio.EOF:
                    pass
            record = await fake.wait_closed(tag)
            assert record["client_closed_early"] and record["tokens_sent"] < 1000
