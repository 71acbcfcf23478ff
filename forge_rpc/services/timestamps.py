"""google.protobuf.Timestamp from the two shapes the domain and the store use (datetime, Unix seconds)."""

from __future__ import annotations

from datetime import datetime

from google.protobuf.timestamp_pb2 import Timestamp

__all__ = ["now", "timestamp"]


def timestamp(value: datetime | float) -> Timestamp:
    ts = Timestamp()
    if isinstance(value, datetime):
        ts.FromDatetime(value)
    else:
        ts.FromNanoseconds(int(value * 1e9))
    return ts


def now() -> Timestamp:
    ts = Timestamp()
    ts.GetCurrentTime()
    return ts
