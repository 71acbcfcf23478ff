"""GetConfig (the running configuration, secrets masked) and ReloadConfig: a changed file applies without a
restart — new requests see the new deployments while a stream already running finishes on the old ones."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiohttp
import grpc
import pytest
import yaml
from forge.chat.v1 import chat_pb2, chat_pb2_grpc
from forge.routing.v1 import routing_pb2, routing_pb2_grpc
from google.protobuf import json_format

from forge_rpc.server.config import ForgeConfig, load_config
from forge_rpc.testing import running_forge
from tests.conftest import storage_config
from tests.fakes import FakeUpstream, fake_model
from tests.routing.conftest import SECRET, clear_routing_tables
from tests.routing.test_provider_keys import read_to_end
from tests.rpc.test_chat import request

if TYPE_CHECKING:
    Stub = routing_pb2_grpc.RoutingServiceAsyncStub

pytestmark = pytest.mark.asyncio

FILE_KEY = "sk-file-key-abcdefghijklmnop"


def write_config(path: Path, fake: FakeUpstream, deployments: dict[str, str], **extra: Any) -> None:
    """`deployments`: model_name → service name, each a wildcard on the fake's OpenAI API."""
    data = {
        "model_list": [
            {
                "model_name": name,
                "litellm_params": {"model": "openai/*", "api_base": fake.openai_base, "api_key": FILE_KEY},
                "model_info": {"service": service},
            }
            for name, service in deployments.items()
        ],
        "providers": {"ollama_host": fake.base_url, "discover_ollama": False, "local_model": False},
        "routing": {"secret_key": SECRET},
        **extra,
    }
    path.write_text(yaml.safe_dump(data))


def file_config(path: Path, tmp_path: Path) -> ForgeConfig:
    # The file names itself through FORGE_CONFIG, as `forge serve --config` does.
    config = load_config(path, env={"FORGE_CONFIG": str(path)})
    return dataclasses.replace(config, storage=storage_config(), data_dir=tmp_path)


async def test_reload_swaps_deployments_while_a_stream_finishes(fake: FakeUpstream, tmp_path: Path) -> None:
    await fake.reset()
    path = tmp_path / "forge.yaml"
    write_config(path, fake, {"one/*": "first"})
    async with (
        running_forge(file_config(path, tmp_path), http=False) as app,
        grpc.aio.insecure_channel(f"127.0.0.1:{app.grpc_port}") as ch,
    ):
        routing, chat = routing_pb2_grpc.RoutingServiceStub(ch), chat_pb2_grpc.ChatServiceStub(ch)
        before = await routing.GetConfig(routing_pb2.GetConfigRequest())
        listed: list[dict[str, object]] = json_format.MessageToDict(before.model_list)  # type: ignore[assignment]
        assert [m["model_name"] for m in listed] == ["one/*"]
        assert before.source == str(path)

        stream = chat.StreamChatCompletion(
            chat_pb2.StreamChatCompletionRequest(
                chat=request(fake_model("one/gpt-long", tokens=200, gap_ms=10, tag="reload-stream"))
            )
        )
        first = await stream.read()
        assert isinstance(first, chat_pb2.ChatEvent) and first.WhichOneof("event") == "delta"

        write_config(path, fake, {"two/*": "second"}, router_settings={"num_retries": 2})
        reloaded = await routing.ReloadConfig(routing_pb2.ReloadConfigRequest())
        assert reloaded.success, reloaded.errors
        assert {"model_list", "router_settings"} <= set(reloaded.changed)
        assert reloaded.message.startswith("applied model_list, router_settings;")  # live; ports etc. are not
        assert reloaded.revision and reloaded.revision != before.revision

        # New requests see the new deployments at once…
        services = await routing.ListServices(routing_pb2.ListServicesRequest())
        assert set(services.services) == {"second"}
        answer = await chat.CreateChatCompletion(
            chat_pb2.CreateChatCompletionRequest(chat=request(fake_model("two/gpt-new", tokens=2)))
        )
        assert answer.choices[0].message.content == "tok0 tok1 "
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await chat.CreateChatCompletion(chat_pb2.CreateChatCompletionRequest(chat=request("one/gpt-gone")))
        assert err.value.code() == grpc.StatusCode.NOT_FOUND
        # …while the stream that started before (and is still running) finishes on the provider it started with.
        (running,) = await fake.requests("reload-stream")
        assert running["ended"] is None
        rest = await read_to_end(stream)
        assert rest[-1].WhichOneof("event") == "finish"
        assert rest[-2].usage.completion_tokens == 200
    (record,) = await fake.requests("reload-stream")
    assert not record["client_closed_early"]


async def test_a_bad_file_changes_nothing_and_says_why(fake: FakeUpstream, tmp_path: Path) -> None:
    path = tmp_path / "forge.yaml"
    write_config(path, fake, {"one/*": "first"})
    async with (
        running_forge(file_config(path, tmp_path), http=False) as app,
        grpc.aio.insecure_channel(f"127.0.0.1:{app.grpc_port}") as ch,
    ):
        routing = routing_pb2_grpc.RoutingServiceStub(ch)
        revision = (await routing.GetConfig(routing_pb2.GetConfigRequest())).revision
        path.write_text("model_list: [{litellm_params: {model: openai/x}}]\n")
        failed = await routing.ReloadConfig(routing_pb2.ReloadConfigRequest())
        assert not failed.success
        assert "model_name" in failed.errors[0]
        assert failed.revision == revision
        path.write_text("model_list: [oops\n")
        assert not (await routing.ReloadConfig(routing_pb2.ReloadConfigRequest())).success
        assert set((await routing.ListServices(routing_pb2.ListServicesRequest())).services) == {"first"}

        # validate_only reports what would change and applies nothing.
        write_config(path, fake, {"one/*": "first", "three/*": "third"})
        dry = await routing.ReloadConfig(routing_pb2.ReloadConfigRequest(validate_only=True))
        assert dry.success and "model_list" in dry.changed
        assert set((await routing.ListServices(routing_pb2.ListServicesRequest())).services) == {"first"}


async def test_reload_without_a_file_is_a_failed_precondition(routing: Stub) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await routing.ReloadConfig(routing_pb2.ReloadConfigRequest())
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION


async def test_get_config_masks_every_secret(fake: FakeUpstream, tmp_path: Path) -> None:
    await clear_routing_tables()
    path = tmp_path / "forge.yaml"
    write_config(path, fake, {"one/*": "first"}, auth={"jwt_secret": "j" * 40})
    async with running_forge(file_config(path, tmp_path)) as app, aiohttp.ClientSession() as http:
        for route in ("/api/config/", "/api/v1/config", "/api/v1/system/config"):
            async with http.get(f"http://127.0.0.1:{app.http_port}{route}") as resp:
                assert resp.status == 200, route
                text = await resp.text()
                shown = await resp.json()
            for secret in (FILE_KEY, SECRET, "j" * 40):
                assert secret not in text, (route, secret)
    entry = shown["model_list"][0]
    assert entry["litellm_params"]["api_key"] == "sk-…mnop"
    assert shown["services"]["first"]["key_source"] == "config"
    assert shown["routing"]["secret_key"] == "FORGE_SECRET_KEY"
    assert shown["security"]["jwt_secret"] == "****"
    assert set(shown) >= {"services", "routing", "security", "model_list", "limits", "source", "revision"}
