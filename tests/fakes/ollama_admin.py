"""Ollama model-management routes: /api/tags, /api/show, /api/pull, /api/delete (and, from ollama_create.py,
/api/blobs and /api/create)."""

from __future__ import annotations

import dataclasses
from typing import Final

from aiohttp import web

from . import ollama_create
from .ollama_common import NDJSON, error, fail_response, line, model_name
from .ollama_store import OllamaModel, layers, normalize
from .scenario import ScenarioError, split_model
from .state import record_of, state_of
from .streaming import StreamPlan, run_stream, run_unary
from .wire_common import json_response, read_object

MISSING_MANIFEST: Final = "pull model manifest: file does not exist"


async def tags(request: web.Request) -> web.StreamResponse:
    models = state_of(request).models.all()
    return json_response({"models": [m.tag_entry() for m in models]})


async def show(request: web.Request) -> web.StreamResponse:
    rec = record_of(request)
    body = await read_object(request, rec)
    name = model_name(body) if body is not None else None
    if name is None:
        return error(400, "model is required")
    rec.model = name
    base, options = split_model(name)
    model = state_of(request).models.get(base)
    if model is None and options is not None:
        # Scenario names work for chat without a pull, so show must not
        # 404 on them either (clients often show before they chat).
        model = OllamaModel.create(base)
    if model is None:
        return error(404, f"model '{name}' not found")
    return json_response(model.show())


def _progress_lines(name: str, steps: int) -> list[bytes]:
    """Per-layer download progress, ``steps`` lines per layer, like Ollama."""
    out: list[bytes] = []
    for digest, total in layers(name):
        # Ollama labels a layer by the first 12 hex chars of its digest.
        status = f"pulling {digest.removeprefix('sha256:')[:12]}"
        for k in range(1, steps + 1):
            out.append(line({"status": status, "digest": digest, "total": total, "completed": total * k // steps}))
    return out


async def pull(request: web.Request) -> web.StreamResponse:
    rec = record_of(request)
    st = state_of(request)
    body = await read_object(request, rec)
    if body is None:
        return error(400, "invalid request body")
    stream = body.get("stream", True) is not False
    try:
        # Real model names carry no options, but a name with @tag=… still
        # gets a findable record.
        sc = st.scenario(model_name(body) or "")
    except ScenarioError as exc:
        return error(400, str(exc))
    rec.model, rec.stream, rec.tag = model_name(body), stream, sc.tag
    if not sc.base:
        return error(400, "model is required")
    if sc.fail:
        return fail_response(sc)
    name = sc.base
    st.recorder.pulls[normalize(name)] += 1
    pacing = st.pull_pacing()

    if "doesnotexist" in name:
        if not stream:
            return error(404, MISSING_MANIFEST)
        # Streaming pulls have already answered 200 when the registry says
        # no, so Ollama reports the failure as an NDJSON error line.
        body_bytes = line({"status": "pulling manifest"}) + line({"error": MISSING_MANIFEST})
        return web.Response(body=body_bytes, content_type=NDJSON)

    progress = _progress_lines(name, pacing.steps)
    # Reuse the stream engine: progress lines are the "tokens", paced by
    # pull_gap_ms instead of the scenario's token options.
    paced = dataclasses.replace(sc, ttft_ms=0.0, gap_ms=pacing.gap_ms)

    def finish() -> bytes:
        # Install before "success" goes out so a client that reacts to
        # success by listing tags already sees the model.
        st.models.add(name)
        return (
            line({"status": "verifying sha256 digest"})
            + line({"status": "writing manifest"})
            + line({"status": "success"})
        )

    if stream:
        plan = StreamPlan(
            content_type=NDJSON,
            head=line({"status": "pulling manifest"}),
            prefix=b"",
            suffix=b"",
            pieces=progress,
            tail=finish,
            malformed=b"{not json\n",
        )
        return await run_stream(request, rec, paced, plan)

    def build() -> web.Response:
        finish()
        return json_response({"status": "success"})

    return await run_unary(request, rec, paced, len(progress), build)


async def delete(request: web.Request) -> web.StreamResponse:
    rec = record_of(request)
    body = await read_object(request, rec)
    name = model_name(body) if body is not None else None
    if name is None:
        return error(400, "model is required")
    rec.model = name
    if not state_of(request).models.remove(name):
        return error(404, f"model '{name}' not found")
    # Ollama answers a successful delete with 200 and an empty body.
    return web.Response(status=200)


def add_routes(app: web.Application) -> None:
    app.router.add_get("/api/tags", tags)
    app.router.add_post("/api/show", show)
    app.router.add_post("/api/pull", pull)
    app.router.add_delete("/api/delete", delete)
    ollama_create.add_routes(app)
