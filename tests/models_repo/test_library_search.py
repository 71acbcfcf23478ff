"""SearchModelLibrary (seed 002 `/api/ollama/library`): pullable Ollama models described from litellm's bundled
model map, filtered by every word of the query, paged."""

from __future__ import annotations

import aiohttp
import grpc
import pytest
from forge.models.v1 import models_pb2, models_pb2_grpc

from forge_rpc.server.app import ForgeApp

pytestmark = pytest.mark.asyncio


async def test_search_finds_models_by_words(forge: ForgeApp, channel: grpc.aio.Channel) -> None:
    stub = models_pb2_grpc.ModelsServiceStub(channel)
    everything = await stub.SearchModelLibrary(models_pb2.SearchModelLibraryRequest(page_size=1000))
    assert len(everything.models) > 10
    assert not everything.next_page_token

    coders = await stub.SearchModelLibrary(models_pb2.SearchModelLibraryRequest(query="coder tools"))
    assert coders.models
    for m in coders.models:
        text = f"{m.name} {m.description} {' '.join(m.tags)}".lower()
        assert "coder" in text and "tools" in text
    assert len(coders.models) < len(everything.models)

    nothing = await stub.SearchModelLibrary(models_pb2.SearchModelLibraryRequest(query="no-such-model-anywhere"))
    assert list(nothing.models) == []


async def test_search_pages(forge: ForgeApp, channel: grpc.aio.Channel) -> None:
    stub = models_pb2_grpc.ModelsServiceStub(channel)
    first = await stub.SearchModelLibrary(models_pb2.SearchModelLibraryRequest(page_size=5))
    second = await stub.SearchModelLibrary(
        models_pb2.SearchModelLibraryRequest(page_size=5, page_token=first.next_page_token)
    )
    assert len(first.models) == len(second.models) == 5
    assert {m.name for m in first.models}.isdisjoint({m.name for m in second.models})
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.SearchModelLibrary(models_pb2.SearchModelLibraryRequest(page_token="garbage"))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_seed_path(forge: ForgeApp) -> None:
    async with aiohttp.ClientSession() as http:
        url = f"http://127.0.0.1:{forge.http_port}/api/ollama/library"
        async with http.get(url, params={"query": "codellama"}) as resp:
            assert resp.status == 200
            body = await resp.json()
    names = [m["name"] for m in body["models"]]
    assert "codellama" in names
