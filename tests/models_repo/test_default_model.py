"""`is_default`: the model a request that names none is routed to; at most one; kept across restarts; a default
that vanished from its provider leaves the configured default in charge until it returns."""

from __future__ import annotations

import asyncio

import grpc
import pytest
from forge.chat.v1 import chat_pb2, chat_pb2_grpc
from forge.models.v1 import models_pb2, models_pb2_grpc

from forge_rpc.adapters.store.model_preferences_cache import REFRESH_S
from forge_rpc.server.app import ForgeApp
from forge_rpc.testing import running_forge
from tests.conftest import forge_config
from tests.fakes import FakeUpstream
from tests.models_repo.conftest import Stub, all_models, ollama_delete, pull, sql_rows, unique
from tests.rpc.rich_status import reason

pytestmark = pytest.mark.asyncio

CONFIGURED_DEFAULT = "fake"  # forge_config's default_model


async def set_default(stub: Stub, name: str, on: bool = True) -> models_pb2.UpdateRepositoryModelResponse:
    return await stub.UpdateRepositoryModel(models_pb2.UpdateRepositoryModelRequest(name=name, is_default=on))


async def chat_without_model(port: int) -> None:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        chat = chat_pb2.ChatRequest(messages=[chat_pb2.Message(role="user", content="which model am I?")])
        await chat_pb2_grpc.ChatServiceStub(channel).CreateChatCompletion(
            chat_pb2.CreateChatCompletionRequest(chat=chat)
        )


async def last_upstream_chat(fake: FakeUpstream) -> tuple[str, str]:
    """(path, model) of the last chat request the fake upstream received."""
    chats = [r for r in await fake.requests() if r["path"] in ("/api/chat", "/v1/chat/completions")]
    assert chats, "the fake upstream saw no chat request"
    return chats[-1]["path"], chats[-1]["model"]


async def stored_defaults(url: str) -> list[str]:
    return [str(r[0]) for r in await sql_rows(url, "SELECT name FROM model_preferences WHERE is_default")]


async def test_the_default_serves_requests_that_name_no_model(
    stub: Stub, app: ForgeApp, fake: FakeUpstream, no_default: str
) -> None:
    reply = await set_default(stub, "qwen2.5:0.5b")
    assert reply.model.is_default and reply.model.available and reply.model.provider == "ollama"
    page = await stub.ListModels(models_pb2.ListModelsRequest())
    assert page.default_model == page.active_model == "qwen2.5:0.5b"
    models = await all_models(stub)
    assert models["qwen2.5:0.5b"].is_default and not models[CONFIGURED_DEFAULT].is_default

    await chat_without_model(app.grpc_port)
    assert await last_upstream_chat(fake) == ("/api/chat", "qwen2.5:0.5b")

    # Clearing it hands requests back to the configured default.
    reply = await set_default(stub, "qwen2.5:0.5b", on=False)
    assert not reply.model.is_default
    assert (await stub.ListModels(models_pb2.ListModelsRequest())).default_model == CONFIGURED_DEFAULT
    await chat_without_model(app.grpc_port)
    path, model = await last_upstream_chat(fake)
    assert path == "/v1/chat/completions" and model == "gpt-fake"
    assert await stored_defaults(no_default) == []


async def test_a_new_default_clears_the_old_one(stub: Stub, no_default: str) -> None:
    await set_default(stub, "llama3.2:1b")
    await set_default(stub, "fake/gpt-fake-2")
    old = await stub.GetRepositoryModel(models_pb2.GetRepositoryModelRequest(name="llama3.2:1b"))
    assert not old.is_default
    assert await stored_defaults(no_default) == ["fake/gpt-fake-2"]
    listed = await stub.ListRepositoryModels(models_pb2.ListRepositoryModelsRequest(page_size=1000))
    assert [m.name for m in listed.models if m.is_default] == ["fake/gpt-fake-2"]
    assert (await stub.ListModels(models_pb2.ListModelsRequest())).default_model == "fake/gpt-fake-2"


async def test_concurrent_default_moves_leave_exactly_one(stub: Stub, no_default: str) -> None:
    names = ["fake/gpt-fake-2", "llama3.2:1b", "qwen2.5:0.5b"]  # not the configured default: it must move
    replies = await asyncio.gather(*(set_default(stub, n) for n in names))
    assert all(r.success for r in replies)
    winner = await stored_defaults(no_default)
    assert len(winner) == 1 and winner[0] in names
    assert (await stub.ListModels(models_pb2.ListModelsRequest())).default_model == winner[0]


async def test_a_model_no_provider_lists_cannot_be_the_default(stub: Stub, no_default: str) -> None:
    name = unique("unlisted")
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.CreateRepositoryModel(
            models_pb2.CreateRepositoryModelRequest(model=models_pb2.RepositoryModel(name=name, is_default=True))
        )
    assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION and reason(info.value) == "MODEL_NOT_AVAILABLE"

    await stub.CreateRepositoryModel(
        models_pb2.CreateRepositoryModelRequest(model=models_pb2.RepositoryModel(name=name))
    )
    await set_default(stub, "llama3.2:1b")
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await set_default(stub, name)
    assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert await stored_defaults(no_default) == ["llama3.2:1b"]  # the refused move changed nothing


async def test_the_stored_default_is_applied_when_forge_starts(stub: Stub, fake: FakeUpstream, no_default: str) -> None:
    await set_default(stub, "llama3.2:1b")
    # A second forge on the same database (a restart, or another replica starting).
    async with running_forge(forge_config(fake), http=False) as second:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{second.grpc_port}") as channel:
            page = await models_pb2_grpc.ModelsServiceStub(channel).ListModels(models_pb2.ListModelsRequest())
        assert page.default_model == "llama3.2:1b"
        await chat_without_model(second.grpc_port)
    assert await last_upstream_chat(fake) == ("/api/chat", "llama3.2:1b")


async def test_a_vanished_default_falls_back_until_it_returns(stub: Stub, fake: FakeUpstream) -> None:
    name = unique()
    await pull(stub, name)
    await set_default(stub, name)
    assert (await stub.ListModels(models_pb2.ListModelsRequest())).default_model == name

    await ollama_delete(fake, name)
    sync = await stub.SyncRepository(models_pb2.SyncRepositoryRequest())
    assert name in sync.missing
    assert (await stub.ListModels(models_pb2.ListModelsRequest())).default_model == CONFIGURED_DEFAULT
    entry = await stub.GetRepositoryModel(models_pb2.GetRepositoryModelRequest(name=name))
    assert entry.is_default and not entry.available  # the choice is kept

    await pull(stub, name)
    sync = await stub.SyncRepository(models_pb2.SyncRepositoryRequest())
    assert name not in sync.missing
    assert (await stub.ListModels(models_pb2.ListModelsRequest())).default_model == name


async def test_syncs_and_default_moves_side_by_side_all_succeed(stub: Stub, no_default: str) -> None:
    replies = await asyncio.gather(
        stub.SyncRepository(models_pb2.SyncRepositoryRequest()),
        set_default(stub, "llama3.2:1b"),
        stub.SyncRepository(models_pb2.SyncRepositoryRequest()),
        set_default(stub, "qwen2.5:0.5b"),
    )
    assert len(replies) == 4
    assert len(await stored_defaults(no_default)) == 1


async def test_another_replica_picks_up_a_new_default_within_the_refresh_interval(
    stub: Stub, fake: FakeUpstream
) -> None:
    async with running_forge(forge_config(fake), http=False) as replica:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{replica.grpc_port}") as channel:
            other = models_pb2_grpc.ModelsServiceStub(channel)
            assert (await other.ListModels(models_pb2.ListModelsRequest())).default_model == CONFIGURED_DEFAULT
            await set_default(stub, "llama3.2:1b")  # written through the first forge
            deadline = asyncio.get_running_loop().time() + REFRESH_S + 5
            while (await other.ListModels(models_pb2.ListModelsRequest())).default_model != "llama3.2:1b":
                assert asyncio.get_running_loop().time() < deadline, "the replica never saw the new default"
                await asyncio.sleep(0.1)  # polling an outcome, bounded by the deadline above
        await chat_without_model(replica.grpc_port)
    assert await last_upstream_chat(fake) == ("/api/chat", "llama3.2:1b")
