"""Routes from bindings: one aiohttp handler per binding, built once at start-up with everything it needs
(request parser, response encoder, method name), and JSON bodies for the router's own 404 and 405."""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import grpc
import orjson
from aiohttp import web

from ..call_metadata import REQUEST_ID, ROUTE_TRAILERS, call_metadata, call_timeout, forwarded_headers
from ..errors import error_reason, error_response
from ..invoke import InvokeError, Invoker
from ..keys import CONFIG, INVOKER
from .encode import encoder_for
from .request import RequestParser, edge_error
from .rules import Binding, bindings, registration_order
from .streaming import internal_error, stream_messages

__all__ = ["TRANSCODED", "Transcoded", "http_error", "route_shape", "setup_transcoding"]

log = logging.getLogger("forge.edge")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# Edge-side failures whose HTTP status is not the gRPC code's usual one.
_STATUS_BY_REASON = {"PAYLOAD_TOO_LARGE": 413, "METHOD_NOT_ALLOWED": 405}
_VARIABLE = re.compile(r"\{[^{}]*(?:\{[^{}]*\}[^{}]*)*\}")


@dataclass(frozen=True, slots=True)
class Transcoded:
    """What setup_transcoding registered, in registration order (the OpenAPI document is built from it)."""

    bindings: tuple[Binding, ...]


TRANSCODED = web.AppKey("forge_transcoded", Transcoded)


def http_error(err: InvokeError, headers: dict[str, str]) -> web.Response:
    response = error_response(err, headers)
    if err.code in (grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.UNIMPLEMENTED):
        special = _STATUS_BY_REASON.get(error_reason(err))
        if special is not None:
            response.set_status(special)
    return response


def _unary(binding: Binding, invoker: Invoker) -> Handler:
    parser = RequestParser(binding)
    encode = encoder_for(binding.info.descriptor.output_type)
    method, response_body = binding.info.full_name, binding.response_body

    async def handle(request: web.Request) -> web.StreamResponse:
        metadata = call_metadata(request)
        headers = {"x-request-id": request[REQUEST_ID]}
        try:
            message = await parser.parse(request)
            result = await invoker.unary(method, message, metadata, call_timeout(request))
            out = encode(result.response)
            if response_body:
                out = out.get(response_body)
            body = orjson.dumps(out)
        except InvokeError as err:
            return http_error(err, headers)
        except Exception as exc:  # a bug, not the client's fault: a JSON 500, never a stack trace
            return http_error(internal_error(exc, headers["x-request-id"]), headers)
        headers.update(forwarded_headers(result.initial, result.trailing))
        for key, value in result.trailing:
            if key in ROUTE_TRAILERS:
                headers[key] = value
        return web.Response(body=body, content_type="application/json", headers=headers)

    return handle


def _server_stream(binding: Binding, invoker: Invoker, heartbeat_s: float) -> Handler:
    parser = RequestParser(binding)
    encode = encoder_for(binding.info.descriptor.output_type)
    method = binding.info.full_name

    async def handle(request: web.Request) -> web.StreamResponse:
        metadata = call_metadata(request)
        rid = request[REQUEST_ID]
        try:
            message = await parser.parse(request)
        except InvokeError as err:
            return http_error(err, {"x-request-id": rid})
        source = invoker.stream(method, message, metadata, call_timeout(request))
        sse = "text/event-stream" in request.headers.get("accept", "")
        return await stream_messages(
            request, source, encode, sse=sse, request_id=rid, heartbeat_s=heartbeat_s, error_response=http_error
        )

    return handle


def route_shape(path: str) -> str:
    """A path with every variable as `{}`, to compare templates whatever their variable names and regexes."""
    return _VARIABLE.sub("{}", path)


@web.middleware
async def router_errors_as_json(request: web.Request, handler: Handler) -> web.StreamResponse:
    """The router's own 404/405 (no route matched) in the edge's error shape instead of aiohttp's text."""
    exc = request.match_info.http_exception
    if exc is None:
        return await handler(request)
    if exc.status == 405:
        allowed = exc.headers.get("allow", "")
        err = edge_error(grpc.StatusCode.UNIMPLEMENTED, "METHOD_NOT_ALLOWED", f"{request.method} is not allowed here")
        return http_error(err, {"allow": allowed})
    if exc.status == 404:
        return http_error(edge_error(grpc.StatusCode.NOT_FOUND, "NOT_FOUND", f"no route for {request.path}"), {})
    return await handler(request)


def setup_transcoding(app: web.Application) -> None:
    """A route for every binding of every annotated RPC the invoker serves. Routes already registered (the
    OpenAI format's, /ws) keep their path: where a seed path collides, real clients speak OpenAI."""
    invoker = app[INVOKER]
    heartbeat_s = app[CONFIG].sse_heartbeat_s
    taken = {(r.method, route_shape(r.resource.canonical)) for r in app.router.routes() if r.resource is not None}
    resources: dict[str, web.Resource] = {}
    registered: list[Binding] = []
    for binding in registration_order(bindings(invoker.methods.values())):
        key = (binding.http_method, route_shape(binding.template.route_path))
        if key in taken:
            log.warning("%s %s is already routed; %s not bound there", *key, binding.info.full_name)
            continue
        taken.add(key)
        if binding.info.server_streaming:
            handler = _server_stream(binding, invoker, heartbeat_s)
        else:
            handler = _unary(binding, invoker)
        path = binding.template.route_path
        resource = resources.get(path)
        if resource is None:
            resource = resources[path] = app.router.add_resource(path)
        resource.add_route(binding.http_method, handler)
        registered.append(binding)
    app[TRANSCODED] = Transcoded(tuple(registered))
    app.middlewares.append(router_errors_as_json)
