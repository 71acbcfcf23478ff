"""SyncRepository against what the providers list: new models added, vanished ones flagged (their preferences
kept), returning ones un-flagged."""

from __future__ import annotations

import pytest
from forge.models.v1 import models_pb2

from tests.fakes import FakeUpstream
from tests.models_repo.conftest import Stub, ollama_delete, pull, sql_rows, unique

pytestmark = pytest.mark.asyncio


async def sync(stub: Stub) -> models_pb2.SyncRepositoryResponse:
    return await stub.SyncRepository(models_pb2.SyncRepositoryRequest())


async def entry(stub: Stub, name: str) -> models_pb2.RepositoryModel:
    return await stub.GetRepositoryModel(models_pb2.GetRepositoryModelRequest(name=name))


async def test_sync_adds_every_listed_model_once(stub: Stub, no_default: str) -> None:
    name = unique()
    await pull(stub, name)
    first = await sync(stub)
    assert name in first.added and first.added == sorted(first.added)
    assert first.total == (await sql_rows(no_default, "SELECT count(*) FROM model_preferences"))[0][0]
    for listed in ("fake", "fake/gpt-fake-2", "llama3.2:1b", name):  # configured, wildcard-expanded, Ollama
        got = await entry(stub, listed)
        assert got.available and got.provider in ("openai", "ollama")
    assert (await entry(stub, name)).provider == "ollama"

    again = await sync(stub)
    assert list(again.added) == [] and again.total == first.total


async def test_a_vanished_model_is_flagged_then_unflagged_when_it_returns(stub: Stub, fake: FakeUpstream) -> None:
    name = unique()
    await pull(stub, name)
    await sync(stub)
    await stub.UpdateRepositoryModel(
        models_pb2.UpdateRepositoryModelRequest(name=name, description="keep me", is_favorite=True)
    )

    await ollama_delete(fake, name)  # removed outside forge
    gone = await sync(stub)
    assert name in gone.missing and name not in gone.added
    flagged = await entry(stub, name)
    assert (flagged.available, flagged.provider) == (False, "")
    assert (flagged.description, flagged.is_favorite) == ("keep me", True)  # preferences survive

    await pull(stub, name)
    back = await sync(stub)
    assert name not in back.missing and name not in back.added
    restored = await entry(stub, name)
    assert (restored.available, restored.provider, restored.description) == (True, "ollama", "keep me")


async def test_an_entry_no_provider_ever_had_stays_unavailable(stub: Stub) -> None:
    name = unique("wishlist")
    await stub.CreateRepositoryModel(
        models_pb2.CreateRepositoryModelRequest(model=models_pb2.RepositoryModel(name=name, description="pull later"))
    )
    result = await sync(stub)
    assert name in result.missing
    got = await entry(stub, name)
    assert not got.available and got.description == "pull later"
