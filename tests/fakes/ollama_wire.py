"""Ollama inference routes: /api/chat, /api/generate, /api/embed(dings), misc.

Model management (tags/show/pull/delete) lives in ollama_admin.py.
"""

from __future__ import annotations

import time
from typing import Any, Final

from aiohttp import web

from .ollama_common import NDJSON, error, fail_response, line, missing_model, timestamp
from .scenario import Scenario, ScenarioError
from .state import record_of
from .streaming import StreamPlan, run_stream, run_unary
from .wire_common import (
    SLOT,
    begin,
    content_text,
    count_words,
    embedding,
    json_response,
    message_contents,
    read_object,
    split_template,
    token_pieces,
)

VERSION: Final = "0.12.0"
# Ollama reports a warm model's load time as a few hundred microseconds.
_LOAD_NS: Final = 500_000


def _stats(start_ns: int, sc: Scenario, prompt: int, evals: int) -> dict[str, int]:
    """Ollama's timing/count fields, from the real elapsed time."""
    total = time.monotonic_ns() - start_ns
    prompt_ns = min(int(sc.ttft_ms * 1_000_000), total)
    return {
        "total_duration": total,
        "load_duration": _LOAD_NS,
        "prompt_eval_count": prompt,
        "prompt_eval_duration": prompt_ns,
        "eval_count": evals,
        "eval_duration": total - prompt_ns,
    }


def _num_predict(body: dict[str, Any]) -> int | None:
    options = body.get("options")
    value = options.get("num_predict") if isinstance(options, dict) else None
    # Negative num_predict means "unlimited" / "fill context" in Ollama.
    return value if isinstance(value, int) and value >= 0 else None


async def _complete(request: web.Request, chat: bool) -> web.StreamResponse:
    """Shared body of /api/chat (``message``) and /api/generate (``response``)."""
    start_ns = time.monotonic_ns()
    rec = record_of(request)
    body = await read_object(request, rec)
    if body is None:
        return error(400, "invalid request body")
    stream = body.get("stream", True) is not False  # Ollama streams by default
    try:
        sc = begin(request, rec, body.get("model"), stream)
    except ScenarioError as exc:
        return error(400, str(exc))
    if not sc.base:
        return error(400, "model is required")
    if sc.fail:
        return fail_response(sc)
    if (missing := missing_model(request, rec.model or "")) is not None:
        return missing

    created = timestamp()
    head: dict[str, Any] = {"model": sc.base, "created_at": created}
    if chat:
        messages = body.get("messages")
        # Empty messages = "load the model" request: one done line, reason load.
        load_only = not messages
        prompt = count_words(message_contents(messages))
        empty: dict[str, Any] = {"message": {"role": "assistant", "content": ""}}
        slot: dict[str, Any] = {"message": {"role": "assistant", "content": SLOT}}
    else:
        text = body.get("prompt")
        load_only = not text
        prompt = count_words([text, body.get("system")])
        empty, slot = {"response": ""}, {"response": SLOT}
    if load_only:
        return json_response({**head, **empty, "done_reason": "load", "done": True})

    tool = sc.tool_call if chat and body.get("tools") else None
    limit = _num_predict(body)
    count = sc.tokens if limit is None else min(sc.tokens, limit)
    reason = "length" if count < sc.tokens else "stop"
    context: dict[str, Any] = {} if chat else {"context": []}
    tool_message: dict[str, Any] = {
        "role": "assistant",
        "content": "",
        "tool_calls": [{"function": {"name": tool, "arguments": {"x": 1}}}],
    }

    def final(full: dict[str, Any], evals: int) -> dict[str, Any]:
        return {
            **head,
            **full,
            "done": True,
            "done_reason": reason,
            **context,
            **_stats(start_ns, sc, prompt, evals),
        }

    if stream:
        if tool:
            # Ollama sends a tool call whole, in one non-final line.
            prefix = line({**head, "message": tool_message, "done": False})
            suffix, pieces = b"", [b""]
        else:
            prefix, suffix = split_template(line({**head, **slot, "done": False}))
            pieces = token_pieces(count)
        plan = StreamPlan(
            content_type=NDJSON,
            head=b"",
            prefix=prefix,
            suffix=suffix,
            pieces=pieces,
            tail=lambda: line(final(empty, len(pieces))),
            malformed=b"{not json\n",
        )
        return await run_stream(request, rec, sc, plan)

    n = 1 if tool else count
    if tool:
        full: dict[str, Any] = {"message": tool_message}
    elif chat:
        full = {"message": {"role": "assistant", "content": content_text(count)}}
    else:
        full = {"response": content_text(count)}
    return await run_unary(request, rec, sc, n, lambda: json_response(final(full, n)))


async def chat(request: web.Request) -> web.StreamResponse:
    return await _complete(request, chat=True)


async def generate(request: web.Request) -> web.StreamResponse:
    return await _complete(request, chat=False)


async def _embed_common(request: web.Request, legacy: bool) -> web.StreamResponse:
    start_ns = time.monotonic_ns()
    rec = record_of(request)
    body = await read_object(request, rec)
    if body is None:
        return error(400, "invalid request body")
    try:
        sc = begin(request, rec, body.get("model"), False)
    except ScenarioError as exc:
        return error(400, str(exc))
    if not sc.base:
        return error(400, "model is required")
    if sc.fail:
        return fail_response(sc)
    if (missing := missing_model(request, rec.model or "")) is not None:
        return missing
    raw = body.get("prompt") if legacy else body.get("input")
    texts = [raw] if isinstance(raw, str) else raw
    if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts):
        return error(400, "invalid input type")
    dims = body.get("dimensions") or 8
    if not isinstance(dims, int) or dims < 1:
        return error(400, "invalid dimensions")

    def build() -> web.Response:
        vectors = [embedding(t, dims) for t in texts]
        if legacy:
            return json_response({"embedding": vectors[0] if vectors else []})
        total = time.monotonic_ns() - start_ns
        return json_response(
            {
                "model": sc.base,
                "embeddings": vectors,
                "total_duration": total,
                "load_duration": min(_LOAD_NS, total),
                "prompt_eval_count": count_words(texts) if texts else 0,
            }
        )

    return await run_unary(request, rec, sc, 0, build)


async def embed(request: web.Request) -> web.StreamResponse:
    return await _embed_common(request, legacy=False)


async def embeddings(request: web.Request) -> web.StreamResponse:
    return await _embed_common(request, legacy=True)


async def version(_: web.Request) -> web.StreamResponse:
    return json_response({"version": VERSION})


async def ps(_: web.Request) -> web.StreamResponse:
    return json_response({"models": []})


async def root(_: web.Request) -> web.StreamResponse:
    # Ollama's liveness probe answer; aiohttp derives HEAD from the GET route.
    return web.Response(text="Ollama is running")


def add_routes(app: web.Application) -> None:
    app.router.add_post("/api/chat", chat)
    app.router.add_post("/api/generate", generate)
    app.router.add_post("/api/embed", embed)
    app.router.add_post("/api/embeddings", embeddings)
    app.router.add_get("/api/version", version)
    app.router.add_get("/api/ps", ps)
    app.router.add_get("/", root)
