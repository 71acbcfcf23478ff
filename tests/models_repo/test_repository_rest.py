"""The repository over HTTP: seed 002's paths (`/api/models/repository…`) with its JSON, the canonical
`/api/v1/repository…` paths, and bad input as 400/404/409 with `{"detail", "code"}`, never 500."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
import pytest_asyncio

from forge_rpc.testing import running_forge
from tests.conftest import forge_config
from tests.fakes import FakeUpstream
from tests.models_repo.conftest import Stub, pull, unique

pytestmark = pytest.mark.asyncio


async def call(http: aiohttp.ClientSession, method: str, path: str, body: object = None) -> tuple[int, Any]:
    async with http.request(method, path, json=body) as resp:
        return resp.status, await resp.json()


async def test_seed_paths_round_trip(http: aiohttp.ClientSession, stub: Stub) -> None:
    name = unique()
    await pull(stub, name)
    status, made = await call(
        http,
        "POST",
        "/api/models/repository",
        {"name": name, "description": "A fast and capable LLM", "tags": ["fast"]},
    )
    assert status == 200, made
    assert made["name"] == name and made["tags"] == ["fast"] and made["created_at"].endswith("Z")
    assert made["available"] is True and made["provider"] == "ollama" and made["is_favorite"] is False

    status, listed = await call(http, "GET", "/api/models/repository")
    assert status == 200 and name in {m["name"] for m in listed["models"]}

    status, reply = await call(
        http,
        "PUT",
        f"/api/models/repository/{name}",
        {"is_favorite": True, "description": "My preferred model"},
    )
    assert status == 200
    assert (reply["success"], reply["message"]) == (True, "Model updated successfully")
    assert reply["model"]["is_favorite"] is True and reply["model"]["tags"] == ["fast"]

    status, shown = await call(http, "GET", f"/api/models/repository/{name}")
    assert status == 200 and shown["description"] == "My preferred model"
    assert shown["stats"] == {"total_requests": 0, "avg_latency_ms": 0}  # the seed's shape, numbers unquoted

    status, synced = await call(http, "POST", "/api/models/repository/sync", {})
    assert status == 200 and synced["total"] >= 1 and isinstance(synced["added"], list)
    assert name not in synced["missing"]

    # The stored preferences show in the seed's model listing too.
    status, models = await call(http, "GET", "/api/ollama/models")
    mine = next(m for m in models["models"] if m["name"] == name)
    assert mine["is_favorite"] is True and mine["description"] == "My preferred model"


async def test_canonical_paths_and_names_with_slashes(http: aiohttp.ClientSession) -> None:
    # fake/gpt-fake-2 is listed (through the fake/* route), so an update creates its entry.
    status, reply = await call(http, "PATCH", "/api/v1/repository/models/fake/gpt-fake-2", {"tags": ["remote"]})
    assert status == 200, reply
    assert reply["model"]["name"] == "fake/gpt-fake-2" and reply["model"]["provider"] == "openai"
    status, shown = await call(http, "GET", "/api/v1/repository/models/fake/gpt-fake-2")
    assert status == 200 and "remote" in shown["tags"]
    status, synced = await call(http, "POST", "/api/v1/repository:sync", {})
    assert status == 200 and "fake/gpt-fake-2" not in synced["missing"]


async def test_default_over_http(http: aiohttp.ClientSession, no_default: str) -> None:
    status, reply = await call(http, "PUT", "/api/models/repository/llama3.2:1b", {"is_default": True})
    assert status == 200 and reply["model"]["is_default"] is True
    status, models = await call(http, "GET", "/api/v1/models")
    assert models["default_model"] == models["active_model"] == "llama3.2:1b"
    status, reply = await call(http, "PUT", "/api/models/repository/llama3.2:1b", {"is_default": False})
    assert status == 200 and reply["model"]["is_default"] is False
    status, models = await call(http, "GET", "/api/v1/models")
    assert models["default_model"] == "fake"


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "code"),
    [
        ("POST", "/api/models/repository", {"name": ""}, 400, "INVALID_ARGUMENT"),
        ("POST", "/api/models/repository", {"name": "x y"}, 400, "INVALID_ARGUMENT"),
        ("POST", "/api/models/repository", {"name": "ok:1b", "tags": "not-a-list"}, 400, "INVALID_ARGUMENT"),
        ("POST", "/api/models/repository", {"name": "ok:1b", "is_favorite": "yes"}, 400, "INVALID_ARGUMENT"),
        ("PUT", "/api/models/repository/llama3.2:1b", {"tags": [""]}, 400, "INVALID_ARGUMENT"),
        ("PUT", "/api/models/repository/llama3.2:1b", {"description": 5}, 400, "INVALID_ARGUMENT"),
        ("GET", "/api/models/repository?page_token=%%%", None, 400, "INVALID_ARGUMENT"),
        ("GET", "/api/models/repository/never-heard-of:it", None, 404, "NOT_FOUND"),
        ("PUT", "/api/models/repository/never-heard-of:it", {"is_favorite": True}, 404, "NOT_FOUND"),
        ("PUT", "/api/models/repository/never-heard-of:it", {"is_default": True}, 400, "MODEL_NOT_AVAILABLE"),
    ],
)
async def test_bad_input_is_a_client_error(
    http: aiohttp.ClientSession, method: str, path: str, body: object, status: int, code: str
) -> None:
    got, answer = await call(http, method, path, body)
    assert got == status, answer
    assert answer["code"] == code and answer["detail"]


async def test_a_duplicate_is_409(http: aiohttp.ClientSession) -> None:
    name = unique()
    assert (await call(http, "POST", "/api/models/repository", {"name": name}))[0] == 200
    status, answer = await call(http, "POST", "/api/models/repository", {"name": name})
    assert status == 409 and answer["code"] == "ALREADY_EXISTS" and name in answer["detail"]


@pytest_asyncio.fixture
async def split_http(fake: FakeUpstream, no_default: str) -> AsyncIterator[aiohttp.ClientSession]:
    """The edge deployed apart from the core (over a gRPC channel)."""
    await fake.reset()
    async with (
        running_forge(forge_config(fake), split=True) as app,
        aiohttp.ClientSession(base_url=f"http://127.0.0.1:{app.http_port}") as session,
    ):
        yield session


async def test_the_split_edge_serves_the_same_paths(split_http: aiohttp.ClientSession) -> None:
    name = unique()
    status, made = await call(split_http, "POST", "/api/models/repository", {"name": name, "is_favorite": True})
    assert status == 200 and made["is_favorite"] is True
    status, answer = await call(split_http, "POST", "/api/models/repository", {"name": name})
    assert status == 409 and answer["code"] == "ALREADY_EXISTS"
    status, shown = await call(split_http, "GET", f"/api/models/repository/{name}")
    assert status == 200 and shown["name"] == name
