"""Transcoded routes over real HTTP: every binding of every annotated RPC answers (no router 404/405), route
precedence (literal over variable, custom verbs, trailing slashes), and golden JSON for the seeds' shapes."""

from __future__ import annotations

import json
import re
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import make_mocked_request

from forge_rpc.server.app import ForgeApp
from gateway.invoke import method_catalog
from gateway.transcode.rules import Binding, bindings

ALL_BINDINGS = list(bindings(method_catalog().values()))
_VAR = re.compile(r"\{[^{}]+\}")


def concrete(binding: Binding) -> str:
    """The binding's path with every variable filled in."""
    return _VAR.sub("x1", binding.template.doc_path)


def binding_id(binding: Binding) -> str:
    return f"{binding.http_method} {binding.template.text}"


def test_every_rpc_with_a_rule_has_bindings() -> None:
    catalog = method_catalog()
    bound = {b.info.full_name for b in ALL_BINDINGS}
    unbound = {name for name, info in catalog.items() if name not in bound}
    # Only client-streaming RPCs have no REST form (protos/README.md, "HTTP rules").
    assert unbound == {name for name, info in catalog.items() if info.client_streaming}
    assert "/forge.rag.v1.RagService/ImportDocuments" in unbound


async def test_every_binding_is_routed(http: aiohttp.ClientSession) -> None:
    misses = []
    for binding in ALL_BINDINGS:
        body: Any = {} if binding.body else None
        async with http.request(binding.http_method, concrete(binding), json=body) as resp:
            if resp.status == 200 and binding.info.server_streaming:
                continue  # a live stream (WatchServiceStatus ends only when the client leaves): routed
            payload = await resp.read()
            routed = resp.status != 405 and not (resp.status == 404 and b"no route for" in payload)
            if not routed:
                misses.append((binding_id(binding), resp.status))
                continue
            if resp.status == 501:
                # Unimplemented services answer with the JSON error naming the RPC the route reached.
                error = await resp.json()
                assert error["code"] == "UNIMPLEMENTED"
                rpc = binding.info.full_name.lstrip("/").replace("/", ".")
                assert rpc in error["detail"], (binding_id(binding), error["detail"])
    assert not misses


@pytest.mark.parametrize(
    ("method", "path", "rpc"),
    [
        # Literal segments win where two templates overlap.
        ("GET", "/api/tasks/history/", "AnalyticsService.ListTaskHistory"),
        ("GET", "/api/tasks/t-1/", "TrainingService.GetTask"),
        # Custom verbs: the bare {job_id} would also match "j-1:cancel".
        ("POST", "/api/v1/jobs/j-1:cancel", "TrainingService.CancelJob"),
        ("GET", "/api/v1/jobs/j-1:watch", "TrainingService.WatchJob"),
        ("GET", "/api/v1/jobs/j-1", "TrainingService.GetJob"),
        ("DELETE", "/api/v1/tasks/t-1", "TrainingService.CancelTask"),
        ("POST", "/api/v1/tasks/t-1:cancel", "TrainingService.CancelTask"),
        ("GET", "/api/v1/tasks/t-1/result", "TrainingService.GetTaskResult"),
        # Trailing slashes exactly as declared.
        ("GET", "/api/services/", "RoutingService.ListServices"),
        ("GET", "/api/services/svc/", "RoutingService.GetService"),
        ("GET", "/api/v1/services/svc", "RoutingService.GetService"),
        ("GET", "/api/api-keys/status/openrouter/", "RoutingService.GetProviderKeyStatus"),
    ],
)
async def test_route_precedence(edge: ForgeApp, method: str, path: str, rpc: str) -> None:
    # Resolved by the edge's own router: which binding's route a path lands on, whatever that RPC answers.
    assert edge.edge is not None
    app = edge.edge.app
    match = await app.router.resolve(make_mocked_request(method, path, app=app))
    assert match.http_exception is None, path
    route = match.route.resource
    assert route is not None
    service, name = rpc.split(".")
    expected = {
        b.template.route_path
        for b in ALL_BINDINGS
        if b.info.full_name.endswith(f"{service}/{name}") and b.http_method.upper() == method
    }
    assert route.canonical in expected, (path, route.canonical, expected)


@pytest.mark.parametrize("path", ["/api/services", "/api/tasks/history", "/api/v1/models/", "/api/v1/jobs/j-1/nope"])
async def test_near_misses_are_not_routed(http: aiohttp.ClientSession, path: str) -> None:
    async with http.get(path) as resp:
        assert resp.status == 404
        body = await resp.json()
        assert body["code"] == "NOT_FOUND" and "no route" in body["detail"]


async def test_chat_seed_004_shape(http: aiohttp.ClientSession) -> None:
    async with http.post("/api/v1/chat", json={"message": "hi", "model": "fake"}) as resp:
        assert resp.status == 200
        assert resp.content_type == "application/json"
        assert resp.headers["x-request-id"]
        body = await resp.json()
    assert body["response"] == "tok0 tok1 tok2 tok3 tok4 tok5 tok6 tok7 "
    assert body["model"] == "fake"
    assert body["tokens_used"] == 9 and isinstance(body["tokens_used"], int)
    assert body["usage"] == {
        "prompt_tokens": 1,
        "completion_tokens": 8,
        "total_tokens": 9,
        "cost_usd": 0.0,
        "estimated": False,
    }
    assert body["choices"][0]["finish_reason"] == "FINISH_REASON_STOP"
    assert body["choices"][0]["message"]["role"] == "assistant"


async def test_seed_001_query_and_request_id_echo(http: aiohttp.ClientSession) -> None:
    headers = {"x-request-id": "rid-query-1"}
    async with http.post("/v1/query", json={"prompt": "hi", "model": "fake"}, headers=headers) as resp:
        assert resp.status == 200
        assert resp.headers["x-request-id"] == "rid-query-1"
        body = await resp.json()
    assert body["id"] == "rid-query-1"
    assert body["response"].startswith("tok0")


@pytest.mark.parametrize(
    "task_type", ["code_generation", "CODE_GENERATION", "TASK_TYPE_CODE_GENERATION", "question_answer", "analysis", 3]
)
async def test_seed_enum_spellings_accepted(http: aiohttp.ClientSession, task_type: object) -> None:
    async with http.post("/api/v1/chat", json={"message": "hi", "model": "fake", "task_type": task_type}) as resp:
        assert resp.status == 200, await resp.text()


async def test_list_models_seed_paths_agree(http: aiohttp.ClientSession) -> None:
    bodies = []
    for path in ("/api/v1/models", "/ollama/models", "/models", "/api/ollama/models"):
        async with http.get(path) as resp:
            assert resp.status == 200
            bodies.append(await resp.json())
    assert all(b["models"] == bodies[0]["models"] for b in bodies)
    first = bodies[0]
    assert first["default_model"] == "fake"
    names = {m["name"] for m in first["models"]}
    assert {"fake", "llama3.2:1b"} <= names
    model = next(m for m in first["models"] if m["name"] == "llama3.2:1b")
    # Fields without presence are always there, ints as numbers.
    assert model["provider"] == "ollama" and isinstance(model["size_bytes"], int)
    assert isinstance(model["is_favorite"], bool) and isinstance(model["tags"], list)


async def test_list_models_query_filter(http: aiohttp.ClientSession) -> None:
    async with http.get("/api/v1/models", params={"provider": "ollama"}) as resp:
        assert resp.status == 200
        models = (await resp.json())["models"]
    assert models and {m["provider"] for m in models} == {"ollama"}


async def test_get_model_with_colon(http: aiohttp.ClientSession) -> None:
    async with http.get("/api/v1/models/llama3.2:1b") as resp:
        assert resp.status == 200
        body = await resp.json()
    assert body["name"] == "llama3.2:1b"
    assert body["provider"] == "ollama"
    assert body["details"]["family"] == "llama"
    assert body["modified_at"].endswith("Z")  # Timestamp as an RFC 3339 string


@pytest.mark.parametrize("path", ["/api/ollama/models/llama3.2:1b", "/api/v1/models/llama3.2%3A1b"])
async def test_delete_model(http: aiohttp.ClientSession, path: str) -> None:
    async with http.delete(path) as resp:
        assert resp.status == 200, await resp.text()
        body = await resp.json()
    assert body["deleted"] is True and body["success"] is True
    assert body["model"] == "llama3.2:1b"
    assert isinstance(body["message"], str)


@pytest.mark.parametrize("path", ["/ollama/models/ollama/qwen2.5:0.5b", "/ollama/models/ollama%2Fqwen2.5:0.5b"])
async def test_multi_segment_variable_takes_slashes(http: aiohttp.ClientSession, path: str) -> None:
    async with http.delete(path) as resp:
        assert resp.status == 200, await resp.text()
        assert (await resp.json())["deleted"] is True


async def test_pull_ndjson(http: aiohttp.ClientSession) -> None:
    async with http.post("/ollama/pull", json={"name": "x:1b"}) as resp:
        assert resp.status == 200
        assert resp.content_type == "application/x-ndjson"
        lines = [line for line in (await resp.text()).split("\n") if line]
    events = [json.loads(line) for line in lines]
    assert events[0]["status"] == "pulling manifest"
    assert events[-1]["done"] is True
    assert all(e["model"] == "x:1b" for e in events)
    assert {"status", "digest", "total", "completed", "percent", "done"} <= set(events[1])
    assert any(isinstance(e["completed"], int) and e["completed"] > 0 for e in events)


async def test_pull_sse(http: aiohttp.ClientSession) -> None:
    headers = {"accept": "text/event-stream"}
    async with http.post("/api/v1/models:pull", json={"model": "x:1b"}, headers=headers) as resp:
        assert resp.status == 200
        assert resp.content_type == "text/event-stream"
        text = await resp.text()
    assert text.endswith("\n\n")
    events = [json.loads(chunk.removeprefix("data: ")) for chunk in text.split("\n\n") if chunk]
    assert all(chunk.startswith("data: ") for chunk in text.split("\n\n") if chunk)
    assert events[-1]["done"] is True
