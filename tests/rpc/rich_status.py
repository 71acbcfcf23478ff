"""Reads the google.rpc.Status details a forge error carries."""

from __future__ import annotations

from typing import TypeVar

import grpc
from google.protobuf.message import Message
from google.rpc import error_details_pb2, status_pb2

M = TypeVar("M", bound=Message)


def status_of(err: grpc.aio.AioRpcError) -> status_pb2.Status:
    for key, value in err.trailing_metadata() or ():
        if key == "grpc-status-details-bin":
            assert isinstance(value, bytes)
            return status_pb2.Status.FromString(value)
    raise AssertionError(f"no rich status on {err.code()}: {err.details()}")


def detail(err: grpc.aio.AioRpcError, kind: type[M]) -> M:
    for any_ in status_of(err).details:
        out = kind()
        if any_.Unpack(out):
            return out
    raise AssertionError(f"no {kind.__name__} in the status of {err.code()}")


def reason(err: grpc.aio.AioRpcError) -> str:
    return str(detail(err, error_details_pb2.ErrorInfo).reason)
