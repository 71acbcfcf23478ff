"""The one place a ForgeError becomes a `google.rpc.Status` with ErrorInfo, BadRequest, RetryInfo and
QuotaFailure details, sent as gRPC's `grpc-status-details-bin` trailer."""

from __future__ import annotations

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.rpc import error_details_pb2, status_pb2

from ..domain import ErrorCode, ForgeError

__all__ = ["DETAILS_KEY", "grpc_code", "to_status"]

DETAILS_KEY = "grpc-status-details-bin"
DOMAIN = "forge"


def grpc_code(code: ErrorCode) -> grpc.StatusCode:
    return _CODES[code]


_CODES = {c: next(s for s in grpc.StatusCode if s.value[0] == c.value) for c in ErrorCode}


def _pack(message: object) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(message)  # type: ignore[arg-type]
    return packed


def to_status(err: ForgeError, request_id: str) -> status_pb2.Status:
    status = status_pb2.Status(code=err.code.value, message=err.message)
    metadata = dict(err.metadata)
    if request_id:
        metadata["request_id"] = request_id
    status.details.append(_pack(error_details_pb2.ErrorInfo(reason=err.reason, domain=DOMAIN, metadata=metadata)))
    if err.violations:
        status.details.append(
            _pack(
                error_details_pb2.BadRequest(
                    field_violations=[
                        error_details_pb2.BadRequest.FieldViolation(field=v.field, description=v.description)
                        for v in err.violations
                    ]
                )
            )
        )
    if err.retry_after_s is not None:
        delay = duration_pb2.Duration()
        delay.FromNanoseconds(int(err.retry_after_s * 1e9))
        status.details.append(_pack(error_details_pb2.RetryInfo(retry_delay=delay)))
    if err.quota_violations:
        status.details.append(
            _pack(
                error_details_pb2.QuotaFailure(
                    violations=[
                        error_details_pb2.QuotaFailure.Violation(subject=s, description=d)
                        for s, d in err.quota_violations
                    ]
                )
            )
        )
    return status
