"""The repository RPCs over gRPC: create, get, update, list, and bad input answered field by field."""

from __future__ import annotations

import grpc
import pytest
from forge.chat.v1 import chat_pb2, chat_pb2_grpc
from forge.models.v1 import models_pb2
from google.rpc import error_details_pb2

from forge_rpc.server.app import ForgeApp
from tests.models_repo.conftest import Stub, all_models, pull, sql_rows, unique
from tests.rpc.rich_status import detail, reason

pytestmark = pytest.mark.asyncio

RepositoryModel = models_pb2.RepositoryModel


async def create(stub: Stub, **fields: object) -> models_pb2.RepositoryModel:
    return await stub.CreateRepositoryModel(
        models_pb2.CreateRepositoryModelRequest(model=RepositoryModel(**fields))  # type: ignore[arg-type]
    )


def violations(err: grpc.aio.AioRpcError) -> dict[str, str]:
    return {v.field: v.description for v in detail(err, error_details_pb2.BadRequest).field_violations}


async def test_create_get_update_round_trip(stub: Stub) -> None:
    name = unique()
    made = await create(stub, name=name, description="A fast one", is_favorite=True, tags=["fast", "small", "fast"])
    assert (made.name, made.description, made.is_favorite, made.is_default) == (name, "A fast one", True, False)
    assert list(made.tags) == ["fast", "small"]  # a repeated tag is kept once
    assert made.created_at.seconds > 0
    assert not made.available and made.provider == ""  # no provider has it (yet)

    got = await stub.GetRepositoryModel(models_pb2.GetRepositoryModelRequest(name=name))
    assert got.name == name and list(got.tags) == ["fast", "small"] and got.HasField("stats")

    reply = await stub.UpdateRepositoryModel(
        models_pb2.UpdateRepositoryModelRequest(name=name, is_favorite=False, tags=["new"])
    )
    assert reply.success and reply.message == "Model updated successfully"
    # Unset fields keep their values; set ones change, even to false.
    assert (reply.model.description, reply.model.is_favorite, list(reply.model.tags)) == ("A fast one", False, ["new"])
    got = await stub.GetRepositoryModel(models_pb2.GetRepositoryModelRequest(name=name))
    assert (got.is_favorite, list(got.tags), got.created_at) == (False, ["new"], made.created_at)


async def test_list_pages_in_name_order_and_filters_favourites(stub: Stub) -> None:
    prefix = unique("list").split(":")[0]
    for i in range(3):
        await create(stub, name=f"{prefix}-{i}", is_favorite=i != 1)
    names: list[str] = []
    token = ""
    while True:
        page = await stub.ListRepositoryModels(models_pb2.ListRepositoryModelsRequest(page_size=2, page_token=token))
        assert len(page.models) <= 2
        names.extend(m.name for m in page.models)
        token = page.next_page_token
        if not token:
            break
    assert names == sorted(names) and len(names) == len(set(names))
    assert [n for n in names if n.startswith(prefix)] == [f"{prefix}-0", f"{prefix}-1", f"{prefix}-2"]

    favourites = await stub.ListRepositoryModels(models_pb2.ListRepositoryModelsRequest(favorites_only=True))
    mine = [m.name for m in favourites.models if m.name.startswith(prefix)]
    assert mine == [f"{prefix}-0", f"{prefix}-2"] and all(m.is_favorite for m in favourites.models)


async def test_preferences_appear_in_list_models_and_get_model(stub: Stub) -> None:
    name = unique()
    await pull(stub, name)
    await stub.UpdateRepositoryModel(  # not in the repository yet, but a provider lists it: created
        models_pb2.UpdateRepositoryModelRequest(name=name, description="mine", is_favorite=True, tags=["a", "b"])
    )
    listed = (await all_models(stub))[name]
    assert (listed.description, listed.is_favorite, list(listed.tags)) == ("mine", True, ["a", "b"])
    assert listed.provider == "ollama" and not listed.is_default
    shown = await stub.GetModel(models_pb2.GetModelRequest(name=name))
    assert (shown.description, shown.is_favorite, list(shown.tags)) == ("mine", True, ["a", "b"])
    entry = await stub.GetRepositoryModel(models_pb2.GetRepositoryModelRequest(name=name))
    assert entry.available and entry.provider == "ollama"


async def test_listings_come_from_the_cache_which_a_write_refreshes(stub: Stub, no_default: str) -> None:
    name = unique()
    await pull(stub, name)
    await stub.UpdateRepositoryModel(models_pb2.UpdateRepositoryModelRequest(name=name, description="before"))
    # Behind forge's back: a listing served from memory does not see it…
    await sql_rows(no_default, "UPDATE model_preferences SET description = 'sneaky' WHERE name = %s", [name])
    assert (await all_models(stub))[name].description == "before"
    # …until a write through forge reloads the cache.
    await stub.UpdateRepositoryModel(models_pb2.UpdateRepositoryModelRequest(name=name, is_favorite=True))
    listed = (await all_models(stub))[name]
    assert (listed.description, listed.is_favorite) == ("sneaky", True)


async def test_stats_count_the_models_requests(stub: Stub, app: ForgeApp) -> None:
    name = unique()
    await pull(stub, name)
    await create(stub, name=name)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{app.grpc_port}") as channel:
        chat = chat_pb2_grpc.ChatServiceStub(channel)
        message = chat_pb2.Message(role="user", content="hi")
        for _ in range(2):
            request = chat_pb2.CreateChatCompletionRequest(chat=chat_pb2.ChatRequest(model=name, messages=[message]))
            await chat.CreateChatCompletion(request)
    assert app.ledger is not None
    await app.ledger.flush()
    entry = await stub.GetRepositoryModel(models_pb2.GetRepositoryModelRequest(name=name))
    assert entry.stats.total_requests == 2 and entry.stats.avg_latency_ms >= 0


async def test_creating_a_name_twice_is_already_exists(stub: Stub) -> None:
    name = unique()
    await create(stub, name=name)
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await create(stub, name=name, description="again")
    assert info.value.code() == grpc.StatusCode.ALREADY_EXISTS and reason(info.value) == "ALREADY_EXISTS"
    got = await stub.GetRepositoryModel(models_pb2.GetRepositoryModelRequest(name=name))
    assert got.description == ""  # the first entry is untouched


@pytest.mark.parametrize(
    ("fields", "field", "words"),
    [
        ({"name": ""}, "model.name", "required"),
        ({"name": "has space"}, "model.name", "whitespace"),
        ({"name": "x" * 257}, "model.name", "256"),
        ({"name": "ok:1b", "description": "d" * 4001}, "model.description", "4000"),
        ({"name": "ok:1b", "tags": ["fine", " "]}, "model.tags[1]", "empty"),
        ({"name": "ok:1b", "tags": ["t" * 65]}, "model.tags[0]", "64"),
        ({"name": "ok:1b", "tags": [f"t{i}" for i in range(33)]}, "model.tags", "32"),
        ({"name": "ok:1b", "tags": ["bell\x07"]}, "model.tags[0]", "control"),
    ],
)
async def test_bad_create_input_names_the_field(stub: Stub, fields: dict[str, object], field: str, words: str) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await create(stub, **fields)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert words in violations(info.value)[field]


async def test_bad_update_input_names_every_field(stub: Stub) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.UpdateRepositoryModel(
            models_pb2.UpdateRepositoryModelRequest(name="", description="d" * 4001, tags=[""])
        )
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert set(violations(info.value)) == {"name", "description", "tags[0]"}


async def test_unknown_names_are_not_found(stub: Stub) -> None:
    name = unique("nowhere")
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.GetRepositoryModel(models_pb2.GetRepositoryModelRequest(name=name))
    assert info.value.code() == grpc.StatusCode.NOT_FOUND and name in (info.value.details() or "")
    # Neither stored nor listed by a provider: nothing to update (and nothing is created).
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.UpdateRepositoryModel(models_pb2.UpdateRepositoryModelRequest(name=name, is_favorite=True))
    assert info.value.code() == grpc.StatusCode.NOT_FOUND
    page = await stub.ListRepositoryModels(models_pb2.ListRepositoryModelsRequest(page_size=1000))
    assert name not in {m.name for m in page.models}


async def test_bad_page_arguments_are_invalid_argument(stub: Stub) -> None:
    for request in (
        models_pb2.ListRepositoryModelsRequest(page_token="not-a-token"),
        models_pb2.ListRepositoryModelsRequest(page_size=-1),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await stub.ListRepositoryModels(request)
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
