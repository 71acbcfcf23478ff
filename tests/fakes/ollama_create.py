"""Ollama's model-creation routes: /api/blobs/:digest (HEAD, POST) and /api/create.

A blob upload is hashed as it streams in and refused (400) when the body
does not match its digest, as Ollama does; only its size and the GGUF's
architecture are kept. /api/create builds a model from uploaded blobs
(``files`` and LoRA ``adapters``) and streams Ollama's progress lines; the
model is then listed, shown and answers chat like a pulled one. Test hook:
a model name starting ``fail-create`` fails like an unsupported GGUF.
"""

from __future__ import annotations

import hashlib
import re
import struct
from typing import Any, Final

from aiohttp import web

from .ollama_common import NDJSON, error, line, model_name
from .ollama_store import Blob
from .state import record_of, state_of
from .wire_common import json_response, read_object

_DIGEST: Final = re.compile(r"sha256[:-]([0-9a-f]{64})")
# Ollama's name grammar without the registry host: [namespace/]model[:tag].
_NAME: Final = re.compile(r"(?:[\w][\w.-]{0,79}/)?[\w][\w.-]{0,79}(?::[\w][\w.-]{0,79})?", re.ASCII)
_HEAD_BYTES: Final = 4096


def _digest(request: web.Request) -> str | None:
    found = _DIGEST.fullmatch(request.match_info["digest"])
    return f"sha256:{found.group(1)}" if found else None


def _architecture(head: bytes) -> str | None:
    """general.architecture when it is a GGUF's first key (llama.cpp's writers put it there)."""
    try:
        if head[:4] != b"GGUF":
            return None
        (key_len,) = struct.unpack_from("<Q", head, 24)
        key = head[32 : 32 + key_len].decode()
        vtype, value_len = struct.unpack_from("<IQ", head, 32 + key_len)
        start = 32 + key_len + 12
        return head[start : start + value_len].decode() if key == "general.architecture" and vtype == 8 else None
    except (struct.error, UnicodeDecodeError):
        return None


async def blob_exists(request: web.Request) -> web.StreamResponse:
    digest = _digest(request)
    if digest is None:
        return error(400, "invalid digest format")
    return web.Response(status=200 if digest in state_of(request).models.blobs else 404)


async def blob_upload(request: web.Request) -> web.StreamResponse:
    rec = record_of(request)
    digest = _digest(request)
    if digest is None:
        return error(400, "invalid digest format")
    sha, size, head = hashlib.sha256(), 0, b""
    async for chunk in request.content.iter_chunked(1 << 20):
        sha.update(chunk)
        size += len(chunk)
        if len(head) < _HEAD_BYTES:
            head += chunk[: _HEAD_BYTES - len(head)]
    got = f"sha256:{sha.hexdigest()}"
    rec.body = {"digest": digest, "size": size, "sha256": got}
    if got != digest:
        return error(400, f"digest mismatch, expected {digest!r}, got {got!r}")
    state_of(request).models.blobs[digest] = Blob(size, _architecture(head))
    return web.Response(status=201)


def _named_digests(raw: object) -> dict[str, str] | None:
    if raw is None:
        return {}
    if isinstance(raw, dict) and all(isinstance(k, str) and isinstance(v, str) for k, v in raw.items()):
        return dict(raw)
    return None


def _problem(request: web.Request, name: str, files: dict[str, str], adapters: dict[str, str], source: Any) -> str:
    """Why the model cannot be built from what the request names ('' when it can)."""
    blobs = state_of(request).models.blobs
    if source and state_of(request).models.get(str(source)) is None:
        return f"model '{source}' not found"
    for digest in (*files.values(), *adapters.values()):
        if digest not in blobs:
            return f"blob {digest} not found: upload it first (POST /api/blobs/{digest})"
        if blobs[digest].architecture is None:
            return "unsupported content type: only GGUF files can be imported"
    if name.startswith("fail-create"):
        return "unsupported architecture"
    return ""


async def create(request: web.Request) -> web.StreamResponse:
    rec = record_of(request)
    body = await read_object(request, rec)
    if body is None:
        return error(400, "invalid request body")
    name = model_name(body) or ""
    rec.model = name
    rec.stream = stream = body.get("stream", True) is not False
    if not _NAME.fullmatch(name):
        return error(400, "invalid model name")
    files, adapters = _named_digests(body.get("files")), _named_digests(body.get("adapters"))
    if files is None or adapters is None:
        return error(400, "files and adapters must map file names to blob digests")
    if not files and not body.get("from"):
        return error(400, "neither 'from' or 'files' was specified")
    problem = _problem(request, name, files, adapters, body.get("from"))
    progress = [line({"status": "parsing GGUF"})]
    if problem:
        # Ollama has already answered 200 when a streamed create fails, so the error comes as a line.
        return (
            web.Response(body=b"".join([*progress, line({"error": problem})]), content_type=NDJSON)
            if stream
            else error(400, problem)
        )
    state_of(request).models.build(name, files, adapters)
    progress += [line({"status": f"using existing layer {d}"}) for d in (*files.values(), *adapters.values())]
    progress += [line({"status": "writing manifest"}), line({"status": "success"})]
    if not stream:
        return json_response({"status": "success"})
    return web.Response(body=b"".join(progress), content_type=NDJSON)


def add_routes(app: web.Application) -> None:
    app.router.add_route("HEAD", "/api/blobs/{digest}", blob_exists)
    app.router.add_post("/api/blobs/{digest}", blob_upload)
    app.router.add_post("/api/create", create)
