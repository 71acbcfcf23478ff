"""Bad input never reaches the core and never answers 500: a table of malformed requests per route family with
the status, body `code` and named field each must get. Then, with a stub invoker that records what it is
called with, exactly which request message the edge builds from body, path and query."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import pytest
from forge.chat.v1 import chat_pb2
from google.protobuf.message import Message

from gateway.app import build_edge, start_edge
from gateway.invoke import CallResult, MethodInfo, method_catalog
from gateway.keys import EdgeConfig

STREAM = "/api/v1/chat/completions:stream"


def deep(levels: int) -> dict[str, Any]:
    out: dict[str, Any] = {"leaf": 1}
    for _ in range(levels):
        out = {"x": out}
    return out


BAD_INPUT: list[tuple[str, str, str, dict[str, Any], int, str, str | None]] = [
    # (case, method, path, request kwargs, status, body code, field named)
    ("malformed JSON", "POST", "/api/v1/chat", {"data": b'{"message": '}, 400, "INVALID_ARGUMENT", None),
    ("not UTF-8", "POST", "/api/v1/chat", {"data": b"\xff\xfe"}, 400, "INVALID_ARGUMENT", None),
    ("array body", "POST", "/api/v1/chat", {"json": [1, 2]}, 400, "INVALID_ARGUMENT", None),
    ("string body, body *", "POST", "/ollama/pull", {"json": "x"}, 400, "INVALID_ARGUMENT", None),
    ("array body on a stream", "POST", STREAM, {"json": [1]}, 400, "INVALID_ARGUMENT", None),
    (
        "wrong type",
        "POST",
        "/api/v1/chat",
        {"json": {"message": "hi", "max_tokens": "many"}},
        400,
        "INVALID_ARGUMENT",
        "max_tokens",
    ),
    (
        "int out of range",
        "POST",
        "/api/v1/chat",
        {"json": {"message": "hi", "max_tokens": 2**40}},
        400,
        "INVALID_ARGUMENT",
        "max_tokens",
    ),
    (
        "wrong nested type",
        "POST",
        "/api/v1/chat",
        {"json": {"messages": [{"role": 5}]}},
        400,
        "INVALID_ARGUMENT",
        "messages.role",
    ),
    ("object for a list", "POST", "/api/v1/chat", {"json": {"messages": "x"}}, 400, "INVALID_ARGUMENT", "messages"),
    (
        "unknown field",
        "POST",
        "/api/v1/chat",
        {"json": {"message": "hi", "bogus": 1}},
        400,
        "INVALID_ARGUMENT",
        "bogus",
    ),
    (
        "unknown nested field",
        "POST",
        STREAM,
        {"json": {"message": "hi", "options": {"nope": 1}}},
        400,
        "INVALID_ARGUMENT",
        "options.nope",
    ),
    (
        "unknown field, body *",
        "POST",
        "/ollama/pull",
        {"json": {"name": "x", "zzz": 1}},
        400,
        "INVALID_ARGUMENT",
        "zzz",
    ),
    (
        "bad enum",
        "POST",
        "/api/v1/chat",
        {"json": {"message": "hi", "task_type": "nope"}},
        400,
        "INVALID_ARGUMENT",
        "task_type",
    ),
    (
        "too deep",
        "POST",
        "/api/v1/chat",
        {"json": {"message": "hi", "response_format": {"type": "json_schema", "json_schema": deep(150)}}},
        400,
        "INVALID_ARGUMENT",
        "response_format.json_schema",
    ),
    ("bad query int", "GET", "/api/v1/models?page_size=abc", {}, 400, "INVALID_ARGUMENT", "page_size"),
    (
        "bad query bool",
        "GET",
        "/api/v1/repository/models?favorites_only=maybe",
        {},
        400,
        "INVALID_ARGUMENT",
        "favorites_only",
    ),
    ("unknown query parameter", "GET", "/api/v1/models?nope=1", {}, 400, "INVALID_ARGUMENT", "nope"),
    (
        "query repeated for one value",
        "GET",
        "/api/v1/models?provider=a&provider=b",
        {},
        400,
        "INVALID_ARGUMENT",
        "provider",
    ),
    ("query for a path field", "GET", "/api/v1/models/x?name=y", {}, 400, "INVALID_ARGUMENT", "name"),
    ("query on a body * route", "POST", "/ollama/pull?x=1", {"json": {"name": "m"}}, 400, "INVALID_ARGUMENT", "x"),
    ("unknown path", "GET", "/api/v1/nope", {}, 404, "NOT_FOUND", None),
    ("wrong method", "PUT", "/api/v1/models", {}, 405, "METHOD_NOT_ALLOWED", None),
]


@pytest.mark.parametrize(
    ("method", "path", "kwargs", "status", "code", "field"),
    [case[1:] for case in BAD_INPUT],
    ids=[case[0] for case in BAD_INPUT],
)
async def test_bad_input(
    http: aiohttp.ClientSession,
    method: str,
    path: str,
    kwargs: dict[str, Any],
    status: int,
    code: str,
    field: str | None,
) -> None:
    async with http.request(method, path, **kwargs) as resp:
        assert resp.status == status, await resp.text()
        assert resp.content_type == "application/json"
        body = await resp.json()
    assert set(body) == {"detail", "code", "error"}
    assert body["code"] == code
    assert body["error"]["message"] == body["detail"]
    assert "Traceback" not in body["detail"] and "Available Fields" not in body["detail"]
    violations = [
        v for d in body["error"].get("details", []) if d["@type"].endswith("BadRequest") for v in d["field_violations"]
    ]
    if field is None:
        assert not violations
    else:
        assert [v["field"] for v in violations] == [field]
        assert field in body["detail"]
    if status == 405:
        assert "GET" in resp.headers["allow"]


# ------------------------------------------------------------------------------------------- stub invoker


class StubInvoker:
    """Records every call; answers empty responses with route trailers, or fails where told."""

    def __init__(self, fail: Mapping[str, BaseException] = {}) -> None:
        self.methods: dict[str, MethodInfo] = method_catalog()
        self.calls: list[tuple[str, Message, dict[str, str], float | None]] = []
        self._fail = fail

    async def unary(self, method: str, request: Message, metadata: Any, timeout: float | None) -> CallResult:
        self.calls.append((method, request, dict(metadata), timeout))
        if method in self._fail:
            raise self._fail[method]
        trailing = [("x-forge-provider", "prov"), ("x-forge-model", "mod"), ("x-internal", "no")]
        return CallResult(self.methods[method].response_type(), trailing)

    async def stream(
        self, method: str, request: Message, metadata: Any, timeout: float | None
    ) -> AsyncIterator[Message]:
        self.calls.append((method, request, dict(metadata), timeout))
        yield self.methods[method].response_type()
        if method in self._fail:
            raise self._fail[method]

    async def close(self) -> None:
        return None


@asynccontextmanager
async def stub_edge(invoker: StubInvoker) -> AsyncIterator[aiohttp.ClientSession]:
    runner, port = await start_edge(build_edge(invoker, EdgeConfig()), "127.0.0.1", 0)
    try:
        async with aiohttp.ClientSession(base_url=f"http://127.0.0.1:{port}") as http:
            yield http
    finally:
        await runner.cleanup()


async def call(method: str, path: str, **kwargs: Any) -> tuple[str, Message, dict[str, str], float | None]:
    invoker = StubInvoker()
    async with stub_edge(invoker) as http, http.request(method, path, **kwargs) as resp:
        assert resp.status == 200, await resp.text()
        await resp.read()
    assert len(invoker.calls) == 1
    return invoker.calls[0]


async def test_body_field_takes_the_flat_object() -> None:
    method, request, _, _ = await call("POST", "/api/v1/chat", json={"message": "hi", "topP": 0.5, "max_tokens": 3})
    assert method == "/forge.chat.v1.ChatService/CreateChatCompletion"
    assert isinstance(request, chat_pb2.CreateChatCompletionRequest)
    assert request.chat.prompt == "hi" and request.chat.top_p == 0.5 and request.chat.max_tokens == 3


async def test_body_star_with_json_name_alias() -> None:
    _, request, _, _ = await call("POST", "/ollama/pull", json={"name": "llama3.2:1b", "insecure": True})
    assert request.model == "llama3.2:1b" and request.insecure  # type: ignore[attr-defined]


async def test_path_variable_wins_over_the_body() -> None:
    _, request, _, _ = await call("POST", "/api/v1/rag/namespaces/ns1:query", json={"query": "q", "namespace": "other"})
    assert request.namespace == "ns1" and request.query == "q"  # type: ignore[attr-defined]


async def test_path_variables_set_fields() -> None:
    method, request, _, _ = await call("GET", "/api/v1/rag/namespaces/ns%2F1/documents/d:1")
    assert method == "/forge.rag.v1.RagService/GetDocument"
    assert request.namespace == "ns/1" and request.document_id == "d:1"  # type: ignore[attr-defined]


async def test_query_parameters_set_fields() -> None:
    query = "limit=5&model=llama3.2&start_time=2024-01-02T03:04:05Z&userId=u1"
    _, request, _, _ = await call("GET", f"/api/v1/analytics/logs?{query}")
    assert request.limit == 5 and request.model == "llama3.2" and request.user_id == "u1"  # type: ignore[attr-defined]
    assert request.start_time.seconds == 1704164645  # type: ignore[attr-defined]


async def test_query_repeated_bool_and_enum() -> None:
    _, request, _, _ = await call("GET", "/providers/health?services=a&services=b")
    assert list(request.services) == ["a", "b"]  # type: ignore[attr-defined]
    _, request, _, _ = await call("GET", "/api/v1/repository/models?favorites_only=true")
    assert request.favorites_only is True  # type: ignore[attr-defined]
    _, request, _, _ = await call("GET", "/api/v1/tasks?state=running&page_size=2")
    assert request.state == 2 and request.page_size == 2  # type: ignore[attr-defined]


async def test_metadata_and_timeout_reach_the_core() -> None:
    headers = {"authorization": "Bearer t", "x-request-id": "r-1", "x-request-timeout": "2.5"}
    _, _, metadata, timeout = await call("GET", "/api/v1/models", headers=headers)
    assert metadata["authorization"] == "Bearer t" and metadata["x-request-id"] == "r-1"
    assert timeout == 2.5


async def test_route_trailers_become_headers() -> None:
    invoker = StubInvoker()
    async with stub_edge(invoker) as http, http.get("/api/v1/models", headers={"x-request-id": "r-2"}) as resp:
        assert resp.status == 200
        assert resp.headers["x-forge-provider"] == "prov" and resp.headers["x-forge-model"] == "mod"
        assert "x-internal" not in resp.headers
        assert resp.headers["x-request-id"] == "r-2"
        body = await resp.json()
    assert body == {"models": [], "next_page_token": "", "default_model": "", "active_model": ""}


async def test_unexpected_exception_is_a_json_500() -> None:
    invoker = StubInvoker({"/forge.models.v1.ModelsService/ListModels": RuntimeError("secret detail")})
    async with stub_edge(invoker) as http, http.get("/api/v1/models") as resp:
        assert resp.status == 500
        body = await resp.json()
    assert body["code"] == "INTERNAL"
    assert "secret" not in json.dumps(body) and "Traceback" not in json.dumps(body)


async def test_unexpected_exception_mid_stream_is_in_band() -> None:
    invoker = StubInvoker({"/forge.models.v1.ModelsService/PullModel": RuntimeError("secret detail")})
    async with stub_edge(invoker) as http, http.post("/api/v1/models:pull", json={"model": "m"}) as resp:
        assert resp.status == 200
        lines = [json.loads(line) for line in (await resp.text()).splitlines()]
    assert lines[0]["done"] is False
    assert lines[-1]["error"]["code"] == "INTERNAL"
    assert "secret" not in json.dumps(lines[-1])
