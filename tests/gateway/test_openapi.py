"""/openapi.json is a valid OpenAPI 3.1 document that lists every route the edge serves, with parameters that
match the path templates; /docs renders it with Swagger UI served from this server (no CDN)."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from aiohttp import web

from forge_rpc.server.app import ForgeApp
from gateway.app import build_edge, start_edge
from gateway.invoke import ChannelInvoker
from gateway.keys import EdgeConfig
from gateway.transcode.handlers import TRANSCODED, route_shape
from gateway.transcode.openai_spec import OPENAI_PATHS
from gateway.transcode.openapi import template_names

METHODS = {"get", "put", "post", "delete", "patch", "head", "options", "trace"}
# Routes that are not HTTP APIs: the document itself, its viewer, the WebSocket channel.
NOT_DOCUMENTED = re.compile(r"^/(openapi\.json|docs(/.*)?|ws)$")


@pytest_asyncio.fixture
async def document(local_edge: ForgeApp) -> AsyncIterator[dict[str, Any]]:
    async with (
        aiohttp.ClientSession(base_url=f"http://127.0.0.1:{local_edge.http_port}") as http,
        http.get("/openapi.json") as resp,
    ):
        assert resp.status == 200
        assert resp.content_type == "application/json"
        yield await resp.json()


def operations(doc: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in doc["paths"].items():
        for method, op in item.items():
            if method in METHODS:
                yield path, method, op


def refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref":
                yield value
            else:
                yield from refs(value)
    elif isinstance(node, list):
        for item in node:
            yield from refs(item)


def resolve(doc: dict[str, Any], pointer: str) -> Any:
    assert pointer.startswith("#/"), pointer
    node: Any = doc
    for part in pointer[2:].split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


def check_structure(doc: dict[str, Any]) -> None:
    """What fuzzers rely on, checked without a validator: unique operationIds, path parameters exactly the
    template's variables, every $ref resolvable, and component schemas valid JSON Schema."""
    assert doc["openapi"] == "3.1.0" and doc["info"]["title"] and doc["info"]["version"]
    ids = [op["operationId"] for _, _, op in operations(doc)]
    assert len(ids) == len(set(ids)), [i for i in ids if ids.count(i) > 1]
    shapes: dict[str, str] = {}
    for path, method, op in operations(doc):
        assert path.startswith("/")
        in_path = [p["name"] for p in op.get("parameters", []) if p["in"] == "path"]
        assert sorted(in_path) == sorted(template_names(path)), (method, path)
        assert all(p["required"] for p in op.get("parameters", []) if p["in"] == "path")
        names = [(p["name"], p["in"]) for p in op.get("parameters", [])]
        assert len(names) == len(set(names)), (method, path)
        assert op["responses"] and "200" in op["responses"]
        # Templated paths that differ only by variable names would be identical to OpenAPI.
        assert shapes.setdefault(route_shape(path), path) == path, (path, shapes[route_shape(path)])
    for pointer in set(refs(doc)):
        resolve(doc, pointer)
    jsonschema = pytest.importorskip("jsonschema")
    for name, schema in doc["components"]["schemas"].items():
        try:
            jsonschema.Draft202012Validator.check_schema(schema)
        except jsonschema.SchemaError as err:  # pragma: no cover - the message says which
            raise AssertionError(f"{name}: {err.message}") from None


def validate(doc: dict[str, Any]) -> None:
    check_structure(doc)
    try:
        from openapi_spec_validator import validate as validate_spec  # type: ignore[import-not-found, unused-ignore]
    except ImportError:
        return  # not a dependency (yet): the structural checks above stand in
    validate_spec(doc)
    validate_spec({**doc, "openapi": "3.0.3"})  # what /docs hands Swagger UI


def test_document_is_valid(document: dict[str, Any]) -> None:
    validate(document)


def test_document_lists_every_route(local_edge: ForgeApp, document: dict[str, Any]) -> None:
    assert local_edge.edge is not None
    app = local_edge.edge.app
    documented = {(m.upper(), route_shape(p)) for p, m, _ in operations(document)}
    served = {
        (r.method, route_shape(r.resource.canonical))
        for r in app.router.routes()
        if r.resource is not None and r.method != "HEAD" and not NOT_DOCUMENTED.match(r.resource.canonical)
    }
    assert served, "no routes?"
    assert served <= documented, sorted(served - documented)
    assert documented <= served, sorted(documented - served)  # nothing documented that 404s
    for binding in app[TRANSCODED].bindings:
        op = document["paths"][binding.template.doc_path][binding.http_method.lower()]
        assert op["operationId"].startswith(f"{binding.service}_{binding.rpc}")


def test_document_shapes(document: dict[str, Any]) -> None:
    paths, schemas = document["paths"], document["components"]["schemas"]
    chat = paths["/api/v1/chat"]["post"]
    assert chat["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/forge.chat.v1.ChatRequest"
    }
    assert chat["responses"]["4XX"] == {"$ref": "#/components/responses/Error"}
    stream = paths["/api/v1/chat/completions:stream"]["post"]["responses"]["200"]["content"]
    assert set(stream) == {"application/x-ndjson", "text/event-stream"}
    # body "*" with a path variable: the body schema leaves the path field out.
    query = paths["/api/v1/rag/namespaces/{namespace}:query"]["post"]
    body = query["requestBody"]["content"]["application/json"]["schema"]
    assert "namespace" not in body["properties"] and "query" in body["properties"]
    assert [p["name"] for p in query["parameters"]] == ["namespace"]
    # GET: query parameters from the remaining fields, Timestamp as date-time, repeated as exploded arrays.
    logs = {p["name"]: p for p in paths["/api/v1/analytics/logs"]["get"]["parameters"]}
    assert logs["start_time"]["schema"] == {"type": "string", "format": "date-time"}
    services = paths["/providers/health"]["get"]["parameters"][0]
    assert services["schema"]["type"] == "array" and services["explode"] is True
    # Messages: proto field names, enums as string enums, int64 as integer or string, Struct as free object.
    completion = schemas["forge.chat.v1.ChatCompletion"]["properties"]
    assert "tokens_used" in completion and "oneOf" in completion["tokens_used"]
    assert schemas["forge.chat.v1.FinishReason"]["enum"][0] == "FINISH_REASON_UNSPECIFIED"
    assert schemas["forge.chat.v1.FunctionDefinition"]["properties"]["parameters"]["type"] == "object"
    assert (
        "Also accepted on input as `message`"
        in schemas["forge.chat.v1.ChatRequest"]["properties"]["prompt"]["description"]
    )
    assert schemas["forge.models.v1.Model"]["properties"]["modified_at"]["format"] == "date-time"
    assert schemas["forge.Error"]["required"] == ["detail", "code", "error"]
    name = next(p for p in paths["/api/v1/models/{name}"]["get"]["parameters"] if p["name"] == "name")
    assert "/" in name["description"]


async def test_openai_fragment_follows_the_routes_present() -> None:
    """With the OpenAI routes registered (gateway/openai does that), the document carries their fragment."""

    async def stub(request: web.Request) -> web.Response:
        return web.json_response({})

    invoker = ChannelInvoker("127.0.0.1:9")  # never called: the document only needs the method catalog
    try:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", stub)
        app.router.add_get("/v1/models", stub)
        app.router.add_get("/v1/models/{model:.+}", stub)
        app.router.add_post("/v1/embeddings", stub)
        from gateway.keys import CONFIG, INVOKER
        from gateway.transcode import setup_docs, setup_transcoding

        app[INVOKER] = invoker
        app[CONFIG] = EdgeConfig(version="9.9.9")
        setup_transcoding(app)
        setup_docs(app)
        runner, port = await start_edge(app, "127.0.0.1", 0)
        try:
            async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{port}/openapi.json") as resp:
                doc = await resp.json()
        finally:
            await runner.cleanup()
    finally:
        await invoker.close()
    validate(doc)
    assert doc["info"]["version"] == "9.9.9"
    for path, item in OPENAI_PATHS.items():
        assert set(doc["paths"][path]) == set(item)
    assert doc["paths"]["/v1/chat/completions"]["post"]["operationId"] == "openai_createChatCompletion"
    assert "openai.ChatCompletionChunk" in doc["components"]["schemas"]


async def test_no_openai_fragment_without_its_routes() -> None:
    invoker = ChannelInvoker("127.0.0.1:9")
    try:
        app = build_edge(invoker)
        from gateway.transcode.docs import OPENAPI

        doc = app[OPENAPI]
        served = {route_shape(r.resource.canonical) for r in app.router.routes() if r.resource is not None}
        for path in OPENAI_PATHS:
            assert (path in doc["paths"]) == (route_shape(path) in served)
    finally:
        await invoker.close()


async def test_docs_page_and_assets_are_local(local_edge: ForgeApp) -> None:
    async with aiohttp.ClientSession(base_url=f"http://127.0.0.1:{local_edge.http_port}") as http:
        async with http.get("/docs") as resp:
            assert resp.status == 200
            assert resp.content_type == "text/html"
            page = await resp.text()
        assets = re.findall(r'(?:src|href)="([^"]+)"', page)
        assert {"/docs/static/swagger-ui-bundle.js", "/docs/static/swagger-ui.css"} <= set(assets)
        for asset in assets:
            assert asset.startswith("/docs/static/"), asset  # same server, no CDN
            async with http.get(asset) as resp:
                assert resp.status == 200, asset
                assert len(await resp.read()) > 100
        spec_url = re.search(r'url: "([^"]+)"', page)
        assert spec_url is not None
        async with http.get(spec_url.group(1)) as resp:
            assert resp.status == 200
            viewer_doc = await resp.json()
        async with http.get("/openapi.json") as resp:
            doc = await resp.json()
    # Swagger UI 4 renders only 3.0.n: the same document, labelled 3.0.3.
    assert viewer_doc["openapi"] == "3.0.3"
    assert {**viewer_doc, "openapi": "3.1.0"} == doc
