"""ModelsService against the fake Ollama and OpenAI upstream: list, show, shared pull progress, delete."""

from __future__ import annotations

import asyncio

import grpc
import pytest
from forge.models.v1 import models_pb2, models_pb2_grpc

from tests.fakes import FakeUpstream
from tests.rpc.rich_status import reason

pytestmark = pytest.mark.asyncio


def stub(channel: grpc.aio.Channel) -> models_pb2_grpc.ModelsServiceAsyncStub:
    return models_pb2_grpc.ModelsServiceStub(channel)


async def all_models(s: models_pb2_grpc.ModelsServiceAsyncStub, page_size: int = 0) -> list[models_pb2.Model]:
    out: list[models_pb2.Model] = []
    token = ""
    while True:
        page = await s.ListModels(models_pb2.ListModelsRequest(page_size=page_size, page_token=token))
        out.extend(page.models)
        token = page.next_page_token
        if not token:
            return out


async def test_list_spans_configured_wildcard_and_ollama_models(channel: grpc.aio.Channel) -> None:
    models = {m.name: m for m in await all_models(stub(channel))}
    assert models["fake"].provider == "openai" and models["fake"].is_default
    assert "fake/gpt-fake-2" in models  # expanded from the upstream's /v1/models for the `fake/*` route
    llama = models["llama3.2:1b"]
    assert llama.provider == "ollama" and llama.size_bytes > 0 and llama.size.endswith("B")
    assert llama.details.family and llama.digest.startswith("sha256:")


async def test_pagination_visits_every_model_once(channel: grpc.aio.Channel) -> None:
    everything = [m.name for m in await all_models(stub(channel))]
    paged = [m.name for m in await all_models(stub(channel), page_size=2)]
    assert paged == everything and len(everything) > 2


async def test_list_filters_by_provider(channel: grpc.aio.Channel) -> None:
    page = await stub(channel).ListModels(models_pb2.ListModelsRequest(provider="ollama"))
    assert page.models and {m.provider for m in page.models} == {"ollama"}
    assert page.default_model == page.active_model == "fake"


async def test_bad_page_token_is_invalid_argument(channel: grpc.aio.Channel) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub(channel).ListModels(models_pb2.ListModelsRequest(page_token="garbage!"))
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_get_model_shows_ollama_details(channel: grpc.aio.Channel) -> None:
    model = await stub(channel).GetModel(models_pb2.GetModelRequest(name="llama3.2:1b"))
    assert model.provider == "ollama" and model.details.format == "gguf"


async def test_get_model_through_the_ollama_wildcard(channel: grpc.aio.Channel) -> None:
    model = await stub(channel).GetModel(models_pb2.GetModelRequest(name="ollama/llama3.2:1b"))
    assert model.provider == "ollama"
    assert model.details.family == "llama"
    assert model.context_length > 0


async def test_get_unknown_model_is_not_found_naming_available(channel: grpc.aio.Channel) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub(channel).GetModel(models_pb2.GetModelRequest(name="no-such"))
    assert info.value.code() == grpc.StatusCode.NOT_FOUND
    assert reason(info.value) == "MODEL_NOT_FOUND"
    assert "llama3.2:1b" in (info.value.details() or "")


async def test_pull_streams_progress_and_the_model_appears(channel: grpc.aio.Channel, fake: FakeUpstream) -> None:
    s = stub(channel)
    updates = [p async for p in s.PullModel(models_pb2.PullModelRequest(model="tinyllama:latest"))]
    assert updates[0].status == "pulling manifest"
    layers = [u for u in updates if u.total]
    assert layers and all(0 <= u.percent <= 100 for u in layers)
    assert any(0 < u.completed < u.total for u in layers)
    assert updates[-1].done and updates[-1].status == "success" and updates[-1].percent == 100
    names = {m.name for m in await all_models(s)}
    assert "tinyllama:latest" in names


async def test_two_callers_share_one_download(channel: grpc.aio.Channel, fake: FakeUpstream) -> None:
    await fake.set_defaults(pull_steps=10, pull_gap_ms=20)
    s = stub(channel)

    async def pull() -> list[models_pb2.PullProgress]:
        return [p async for p in s.PullModel(models_pb2.PullModelRequest(model="shared:7b"))]

    first, second = await asyncio.gather(pull(), pull())
    assert first[-1].done and second[-1].done
    assert [u.completed for u in first] == [u.completed for u in second]
    assert sum(n for name, n in (await fake.pulls()).items() if name.startswith("shared")) == 1


async def test_pull_unknown_model_is_not_found(channel: grpc.aio.Channel) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        async for _ in stub(channel).PullModel(models_pb2.PullModelRequest(model="doesnotexist:1b")):
            pass
    assert info.value.code() == grpc.StatusCode.NOT_FOUND


async def test_delete_removes_the_model(channel: grpc.aio.Channel) -> None:
    s = stub(channel)
    async for _ in s.PullModel(models_pb2.PullModelRequest(model="scratch:1b")):
        pass
    reply = await s.DeleteModel(models_pb2.DeleteModelRequest(name="scratch:1b"))
    assert reply.deleted and reply.success and reply.model == "scratch:1b"
    assert "scratch:1b" not in {m.name for m in await all_models(s)}
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await s.DeleteModel(models_pb2.DeleteModelRequest(name="scratch:1b"))
    assert info.value.code() == grpc.StatusCode.NOT_FOUND
