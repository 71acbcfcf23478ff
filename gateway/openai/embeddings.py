"""OpenAI embeddings JSON ⇄ `forge.rag.v1.CreateEmbeddings`.

The official SDK asks for `encoding_format: "base64"` unless told otherwise (it decodes faster than a JSON float
list), so both forms are served: base64 is the vector's float32 values, little-endian, as OpenAI sends them."""

from __future__ import annotations

import array
import base64
import sys
from collections.abc import Iterable
from dataclasses import dataclass

import orjson
from forge.rag.v1 import rag_pb2

from .errors import invalid_request
from .schema import JSON, item_str, opt_int, opt_str, req_str, type_error

__all__ = ["EmbeddingsCall", "embeddings_json", "parse_embeddings"]

MAX_INPUTS = 2048  # OpenAI's limit, and the contract's


@dataclass(frozen=True, slots=True)
class EmbeddingsCall:
    request: rag_pb2.CreateEmbeddingsRequest
    model: str
    base64: bool


def _inputs(value: object) -> list[str]:
    if isinstance(value, str):
        return [value]
    if not isinstance(value, list):
        raise type_error("input", "a string or an array of strings", value)
    if not value:
        raise invalid_request("'input' must not be empty", "input", "invalid_value")
    if len(value) > MAX_INPUTS:
        raise invalid_request(f"'input' holds at most {MAX_INPUTS} items", "input", "invalid_value")
    if isinstance(value[0], int | list):
        # Token arrays would need the embedder's own tokenizer to turn back into text.
        raise invalid_request("token arrays are not supported as 'input'; send text", "input", "unsupported_value")
    return [item_str(v, f"input[{i}]") for i, v in enumerate(value)]


def parse_embeddings(body: JSON) -> EmbeddingsCall:
    model = req_str(body, "model")
    if "input" not in body:
        req_str(body, "input")  # raises the missing-parameter error
    fmt = opt_str(body, "encoding_format") or "float"
    if fmt not in ("float", "base64"):
        raise invalid_request("'encoding_format' must be 'float' or 'base64'", "encoding_format", "invalid_value")
    request = rag_pb2.CreateEmbeddingsRequest(
        input=_inputs(body["input"]), model=model, user=opt_str(body, "user") or ""
    )
    dimensions = opt_int(body, "dimensions")
    if dimensions is not None:
        if not 1 <= dimensions < 2**31:
            raise invalid_request("'dimensions' must be a positive integer", "dimensions", "invalid_value")
        request.dimensions = dimensions
    return EmbeddingsCall(request, model, fmt == "base64")


def _b64(values: Iterable[float]) -> str:
    floats = array.array("f", values)
    if sys.byteorder == "big":
        floats.byteswap()
    return base64.b64encode(floats.tobytes()).decode()


def embeddings_json(reply: rag_pb2.CreateEmbeddingsResponse, call: EmbeddingsCall) -> bytes:
    data = [
        {
            "object": "embedding",
            "index": e.index,
            "embedding": _b64(e.embedding) if call.base64 else list(e.embedding),
        }
        for e in reply.data
    ]
    usage = {"prompt_tokens": reply.usage.prompt_tokens, "total_tokens": reply.usage.total_tokens}
    return orjson.dumps({"object": "list", "data": data, "model": reply.model or call.model, "usage": usage})
