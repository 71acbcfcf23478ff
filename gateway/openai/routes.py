"""The OpenAI routes under `/v1`: HTTP in, one core call through the app's Invoker, OpenAI JSON out.

Every answer carries `x-request-id` (the client's when it sent one) and the core's rate-limit headers
(`x-ratelimit-*`, as OpenAI sends them); every failure is OpenAI's error shape with the status the official SDK
maps to its typed exceptions (a 429 with `retry-after` and the `x-ratelimit-*` state)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import orjson
from aiohttp import web
from forge.chat.v1 import chat_pb2
from forge.models.v1 import models_pb2
from forge.rag.v1 import rag_pb2
from google.protobuf.message import Message

from ..call_metadata import REQUEST_ID, TRAILING, UPSTREAM_MS, call_metadata, call_timeout, forwarded_headers
from ..invoke import InvokeError, Metadata
from ..keys import CONFIG, INVOKER
from .embeddings import embeddings_json, parse_embeddings
from .errors import OpenAIError, invalid_request
from .schema import read_object
from .sse import refused, stream_chat
from .translate import completion_json, parse_chat

__all__ = ["setup_routes"]

CREATE = "/forge.chat.v1.ChatService/CreateChatCompletion"
LIST_MODELS = "/forge.models.v1.ModelsService/ListModels"
GET_MODEL = "/forge.models.v1.ModelsService/GetModel"
EMBEDDINGS = "/forge.rag.v1.RagService/CreateEmbeddings"
MODELS_PAGE = 1000

#: Headers from the core's metadata for the answer (rate limits, deployment, attempts); set by `_unary`.
FORWARDED = web.RequestKey("forge_forwarded_headers", dict[str, str])

Handler = Callable[[web.Request, Metadata], Awaitable[web.StreamResponse]]


def _json(request: web.Request, body: bytes, extra: dict[str, str] | None = None) -> web.Response:
    headers = {**request.get(FORWARDED, {}), "x-request-id": request[REQUEST_ID], **(extra or {})}
    return web.Response(body=body, content_type="application/json", headers=headers)


def _openai_errors(handler: Handler) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """Binds the call metadata (and with it the request id) first, so even a body that fails to parse is
    answered with the id; turns OpenAIError into its response."""

    async def wrapped(request: web.Request) -> web.StreamResponse:
        metadata = call_metadata(request)
        try:
            return await handler(request, metadata)
        except OpenAIError as err:
            return err.response(request[REQUEST_ID])

    return wrapped


async def _unary(request: web.Request, method: str, message: Message, metadata: Metadata, prefix: str = "") -> Message:
    try:
        result = await request.app[INVOKER].unary(method, message, metadata, call_timeout(request))
    except InvokeError as err:
        raise refused(err, prefix) from None
    request[TRAILING] = list(result.trailing)
    request[FORWARDED] = forwarded_headers(result.initial, result.trailing)
    return result.response


async def chat_completions(request: web.Request, metadata: Metadata) -> web.StreamResponse:
    call = parse_chat(await read_object(request, request.app[CONFIG].max_body_bytes))
    if call.stream:
        return await stream_chat(request, call, metadata, call_timeout(request))
    if call.include_usage:
        raise invalid_request("'stream_options' is only allowed when 'stream' is true", "stream_options")
    reply = await _unary(request, CREATE, chat_pb2.CreateChatCompletionRequest(chat=call.chat), metadata, "chat.")
    assert isinstance(reply, chat_pb2.ChatCompletion)
    rid = request[REQUEST_ID]
    # Which route answered is known for a unary call; streams learn it only at their end, after the headers.
    route = {"x-forge-provider": reply.provider, "x-forge-model": reply.model} if reply.provider else {}
    route.update((k, v) for k, v in request.get(TRAILING, ()) if k == UPSTREAM_MS)
    return _json(request, completion_json(reply, f"chatcmpl-{rid}", call.model), route)


def _model_json(m: models_pb2.Model, fallback_created: int) -> dict[str, object]:
    created = m.modified_at.seconds if m.HasField("modified_at") else fallback_created
    return {"id": m.name, "object": "model", "created": created, "owned_by": m.owned_by or m.provider or "forge"}


async def list_models(request: web.Request, metadata: Metadata) -> web.StreamResponse:
    started = int(request.app[CONFIG].started_at)
    data: list[dict[str, object]] = []
    token = ""
    while True:  # OpenAI's list is one page: walk all of the core's
        page = await _unary(
            request, LIST_MODELS, models_pb2.ListModelsRequest(page_size=MODELS_PAGE, page_token=token), metadata
        )
        assert isinstance(page, models_pb2.ListModelsResponse)
        data.extend(_model_json(m, started) for m in page.models)
        token = page.next_page_token
        if not token:
            break
    return _json(request, orjson.dumps({"object": "list", "data": data}))


async def retrieve_model(request: web.Request, metadata: Metadata) -> web.StreamResponse:
    name = request.match_info["model"]
    model = await _unary(request, GET_MODEL, models_pb2.GetModelRequest(name=name), metadata)
    assert isinstance(model, models_pb2.Model)
    started = int(request.app[CONFIG].started_at)
    return _json(request, orjson.dumps(_model_json(model, started)))


async def create_embeddings(request: web.Request, metadata: Metadata) -> web.StreamResponse:
    call = parse_embeddings(await read_object(request, request.app[CONFIG].max_body_bytes))
    reply = await _unary(request, EMBEDDINGS, call.request, metadata)
    assert isinstance(reply, rag_pb2.CreateEmbeddingsResponse)
    return _json(request, embeddings_json(reply, call))


def setup_routes(app: web.Application) -> None:
    app.router.add_post("/v1/chat/completions", _openai_errors(chat_completions))
    app.router.add_get("/v1/models", _openai_errors(list_models))
    # Model ids hold "/" and ":" ("fake/gpt-fake", "llama3.2:1b"): match the rest of the path.
    app.router.add_get("/v1/models/{model:.+}", _openai_errors(retrieve_model))
    app.router.add_post("/v1/embeddings", _openai_errors(create_embeddings))
