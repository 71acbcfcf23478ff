"""OpenAI's error shape, `{"error": {"message", "type", "param", "code"}}`, with the HTTP status the official SDK
turns into its typed exceptions (BadRequestError, AuthenticationError, NotFoundError, RateLimitError…).

Every failure on an OpenAI route ends here: edge-side validation (`OpenAIError` raised directly) and core
failures (`from_invoke`, a gRPC status with its `google.rpc.Status` details)."""

from __future__ import annotations

from dataclasses import dataclass, field

import grpc
import orjson
from aiohttp import web
from google.rpc import error_details_pb2

from ..errors import HTTP_STATUS, error_reason, retry_after_s
from ..invoke import InvokeError

__all__ = ["OpenAIError", "from_invoke", "from_stream_error", "invalid_request"]

# ErrorInfo reasons that have an OpenAI `code` clients already test for; other reasons are sent lower-cased.
_CODES = {
    "INVALID_ARGUMENT": "invalid_value",
    "MODEL_NOT_FOUND": "model_not_found",
    "PROVIDER_RATE_LIMITED": "rate_limit_exceeded",
    "RESOURCE_EXHAUSTED": "rate_limit_exceeded",
    "UNAUTHENTICATED": "invalid_api_key",
}


@dataclass(slots=True)
class OpenAIError(Exception):
    status: int
    message: str
    type: str
    param: str | None = None
    code: str | None = None
    headers: dict[str, str] = field(default_factory=dict)

    def body(self) -> bytes:
        return orjson.dumps(
            {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}
        )

    def sse(self) -> bytes:
        """The in-band form, for an error after a stream's first byte (the SDK raises APIError on it)."""
        return b"data: " + self.body() + b"\n\n"

    def response(self, request_id: str | None) -> web.Response:
        headers = dict(self.headers)
        if request_id:
            headers["x-request-id"] = request_id
        return web.Response(status=self.status, body=self.body(), content_type="application/json", headers=headers)


def invalid_request(message: str, param: str | None = None, code: str | None = None, status: int = 400) -> OpenAIError:
    return OpenAIError(status, message, "invalid_request_error", param, code)


def _type(status: int, reason: str) -> str:
    if reason == "MODEL_NOT_FOUND":
        return "invalid_request_error"  # what OpenAI sends for an unknown model, with code model_not_found
    if status == 401:
        return "authentication_error"
    if status == 403:
        return "permission_error"
    if status == 404:
        return "not_found_error"
    if status == 429:
        return "rate_limit_error"
    if status >= 500:
        return "server_error"
    return "invalid_request_error"


def _violations(err: InvokeError) -> list[error_details_pb2.BadRequest.FieldViolation]:
    for any_ in err.status.details if err.status is not None else ():
        bad = error_details_pb2.BadRequest()
        if any_.Unpack(bad):
            return list(bad.field_violations)
    return []


def from_invoke(err: InvokeError, field_prefix: str = "") -> OpenAIError:
    """`field_prefix` is the proto path the OpenAI body maps to (`chat.`), stripped so that a violation of
    `chat.messages[0].role` is reported as OpenAI's param `messages[0].role`."""
    status = HTTP_STATUS.get(err.code, 500)
    reason = error_reason(err)
    violations = _violations(err)
    params = [v.field.removeprefix(field_prefix) for v in violations]
    message = "; ".join(f"{p}: {v.description}" for p, v in zip(params, violations, strict=True)) or err.message
    param = params[0] if params else ("model" if reason == "MODEL_NOT_FOUND" else None)
    headers: dict[str, str] = {}
    retry = retry_after_s(err)
    if retry is not None and status in (429, 503):
        headers["retry-after"] = str(retry)
    return OpenAIError(status, message, _type(status, reason), param, _CODES.get(reason, reason.lower()), headers)


def from_stream_error(code: int, reason: str, message: str) -> OpenAIError:
    """A `forge.chat.v1.StreamError` event (a failure after the stream started)."""
    status_code = _BY_VALUE.get(code, grpc.StatusCode.UNKNOWN)
    status = HTTP_STATUS.get(status_code, 500)
    reason = reason or status_code.name
    return OpenAIError(status, message, _type(status, reason), None, _CODES.get(reason, reason.lower()))


_BY_VALUE = {s.value[0]: s for s in grpc.StatusCode}
