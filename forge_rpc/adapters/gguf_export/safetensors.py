"""Reads the safetensors format into numpy: an 8-byte little-endian header length, a JSON header naming each
tensor's dtype, shape and byte range, then the bytes. PEFT saves adapters in it, and the core has no torch (nor the
`safetensors` package) to read them with."""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from ...domain import FailedPrecondition

__all__ = ["read_safetensors"]

_DTYPES: dict[str, type[np.generic]] = {"F32": np.float32, "F16": np.float16, "F64": np.float64, "BF16": np.uint16}
_MAX_HEADER = 100 * 1024 * 1024  # the format's own limit: a bigger length means the file is something else


def _bad(path: Path, why: str) -> Exception:
    return FailedPrecondition(f"{path} is not a readable safetensors file: {why}", "ADAPTER_INVALID")


def read_safetensors(path: Path) -> dict[str, npt.NDArray[np.float32]]:
    """Every tensor of the file as float32 (adapters are small: the whole file is read at once)."""
    raw = path.read_bytes()
    if len(raw) < 8:
        raise _bad(path, "too short")
    (size,) = struct.unpack("<Q", raw[:8])
    if size > min(_MAX_HEADER, len(raw) - 8):
        raise _bad(path, "header length out of range")
    try:
        header: dict[str, Any] = json.loads(raw[8 : 8 + size])
    except ValueError as exc:
        raise _bad(path, f"header is not JSON ({exc})") from None
    data = memoryview(raw)[8 + size :]
    out: dict[str, npt.NDArray[np.float32]] = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        dtype = _DTYPES.get(str(info.get("dtype")))
        if dtype is None:
            raise _bad(path, f"tensor {name} has dtype {info.get('dtype')}, not a float type")
        shape = tuple(int(d) for d in info["shape"])
        begin, end = (int(x) for x in info["data_offsets"])
        count = int(np.prod(shape)) if shape else 1
        if end > len(data) or end - begin != count * np.dtype(dtype).itemsize:
            raise _bad(path, f"tensor {name} has a byte range that does not fit its shape")
        array = np.frombuffer(data[begin:end], dtype=dtype).reshape(shape)
        if dtype is np.uint16:  # bfloat16: the upper half of a float32
            array = (array.astype(np.uint32) << 16).view(np.float32)
        out[name] = array.astype(np.float32)
    return out
