"""`GET /openapi.json` (OpenAPI 3.1, built once at start-up from the registered bindings and the OpenAI routes
present) and `GET /docs` (Swagger UI from the installed `swagger-ui-bundle`, assets under /docs/static — the
machines here have no internet, so no CDN)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
from aiohttp import web
from swagger_ui_bundle import swagger_ui_path

from ..keys import CONFIG
from .handlers import TRANSCODED, route_shape
from .openai_spec import OPENAI_PATHS, OPENAI_SCHEMAS
from .openapi import build_document

__all__ = ["OPENAPI", "setup_docs"]

OPENAPI = web.AppKey("forge_openapi", dict)

_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>forge API</title>
  <link rel="stylesheet" href="/docs/static/swagger-ui.css">
  <link rel="icon" type="image/png" href="/docs/static/favicon-32x32.png">
</head>
<body>
  <div id="swagger-ui"></div>
  <script src="/docs/static/swagger-ui-bundle.js"></script>
  <script src="/docs/static/swagger-ui-standalone-preset.js"></script>
  <script>
    window.ui = SwaggerUIBundle({
      url: "/docs/openapi.json",
      dom_id: "#swagger-ui",
      deepLinking: true,
      presets: [SwaggerUIBundle.presets.apis, SwaggerUIStandalonePreset],
      layout: "StandaloneLayout",
    });
  </script>
</body>
</html>
"""


def _openai_paths(app: web.Application) -> dict[str, dict[str, Any]]:
    """The fragment's operations whose route the edge really has (gateway/openai registers them)."""
    routed = {(r.method, route_shape(r.resource.canonical)) for r in app.router.routes() if r.resource is not None}
    out: dict[str, dict[str, Any]] = {}
    for path, item in OPENAI_PATHS.items():
        ops = {m: op for m, op in item.items() if (m.upper(), route_shape(path)) in routed}
        if ops:
            out[path] = ops
    return out


def setup_docs(app: web.Application) -> None:
    transcoded = app.get(TRANSCODED)
    openai = _openai_paths(app)
    document = build_document(
        transcoded.bindings if transcoded is not None else (),
        app[CONFIG].version,
        openai,
        OPENAI_SCHEMAS if openai else {},
    )
    app[OPENAPI] = document
    spec = orjson.dumps(document)
    # Swagger UI 4 (the newest swagger-ui-bundle) renders only `openapi: 3.0.n`; the schemas are written in the
    # subset both versions share, so the viewer gets the same document under a 3.0.3 label.
    spec_30 = orjson.dumps({**document, "openapi": "3.0.3"})

    async def openapi_json(request: web.Request) -> web.Response:
        return web.Response(body=spec, content_type="application/json")

    async def openapi_json_30(request: web.Request) -> web.Response:
        return web.Response(body=spec_30, content_type="application/json")

    async def docs(request: web.Request) -> web.Response:
        return web.Response(text=_PAGE, content_type="text/html")

    app.router.add_get("/openapi.json", openapi_json, allow_head=False)
    app.router.add_get("/docs", docs, allow_head=False)
    app.router.add_get("/docs/openapi.json", openapi_json_30, allow_head=False)
    app.router.add_static("/docs/static", Path(str(swagger_ui_path)))
