"""The one place an InvokeError (a gRPC status) becomes an HTTP answer: status code, `retry-after` (from RetryInfo,
rounded up to whole seconds), the core's rate-limit headers (`x-ratelimit-*`, from the error's trailing metadata),
and the body `{"detail", "code", "error": <google.rpc.Status as JSON>}`. The OpenAI routes use OpenAI's shape
instead (gateway/openai), with the same headers (`error_headers`)."""

from __future__ import annotations

import math
from typing import Any

import grpc
import orjson
from aiohttp import web
from google.protobuf import json_format
from google.rpc import error_details_pb2, status_pb2

from .call_metadata import forwarded_headers
from .invoke import InvokeError

__all__ = [
    "HTTP_STATUS",
    "bad_request",
    "error_headers",
    "error_json",
    "error_reason",
    "error_response",
    "retry_after_s",
]

HTTP_STATUS: dict[grpc.StatusCode, int] = {
    grpc.StatusCode.OK: 200,
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.FAILED_PRECONDITION: 400,
    grpc.StatusCode.OUT_OF_RANGE: 400,
    grpc.StatusCode.UNAUTHENTICATED: 401,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.ABORTED: 409,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.CANCELLED: 499,
    grpc.StatusCode.UNIMPLEMENTED: 501,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
}


def _details(status: status_pb2.Status | None, kind: type[Any]) -> Any | None:
    for any_ in status.details if status is not None else ():
        out = kind()
        if any_.Unpack(out):
            return out
    return None


def error_reason(err: InvokeError) -> str:
    """The ErrorInfo reason ("MODEL_NOT_FOUND"…), else the status code name."""
    info = _details(err.status, error_details_pb2.ErrorInfo)
    return str(info.reason) if info is not None and info.reason else err.code.name


def retry_after_s(err: InvokeError) -> int | None:
    info = _details(err.status, error_details_pb2.RetryInfo)
    if info is None:
        return None
    return max(1, math.ceil(int(info.retry_delay.seconds) + int(info.retry_delay.nanos) / 1e9))


def error_json(err: InvokeError) -> dict[str, Any]:
    status = err.status or status_pb2.Status(code=err.code.value[0], message=err.message)
    return {
        "detail": err.message,
        "code": error_reason(err),
        "error": json_format.MessageToDict(status, preserving_proto_field_name=True),
    }


def error_headers(err: InvokeError) -> dict[str, str]:
    """`retry-after` and the headers the core attached to the failure (rate-limit state of a 429, the route)."""
    out = forwarded_headers(err.trailing)
    retry = retry_after_s(err)
    if retry is not None:
        out["retry-after"] = str(retry)
    return out


def error_response(err: InvokeError, headers: dict[str, str] | None = None) -> web.Response:
    out = {**(headers or {}), **error_headers(err)}
    return web.Response(
        status=HTTP_STATUS.get(err.code, 500),
        body=orjson.dumps(error_json(err)),
        content_type="application/json",
        headers=out,
    )


def bad_request(
    detail: str, field: str | None = None, code: grpc.StatusCode = grpc.StatusCode.INVALID_ARGUMENT
) -> InvokeError:
    """An edge-side validation failure (malformed JSON, unknown field…) in the same shape as a core error."""
    status = status_pb2.Status(code=code.value[0], message=detail)
    info = error_details_pb2.ErrorInfo(reason="INVALID_ARGUMENT", domain="forge")
    status.details.add().Pack(info)
    if field:
        violation = error_details_pb2.BadRequest.FieldViolation(field=field, description=detail)
        status.details.add().Pack(error_details_pb2.BadRequest(field_violations=[violation]))
    return InvokeError(code, detail, status)
