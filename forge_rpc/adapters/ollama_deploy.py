"""Creating a model in Ollama from local GGUF files through its API, so the Ollama may be on another machine: each
file is uploaded as a blob (`HEAD` first, so a base GGUF already there is not sent again), then `POST /api/create`
names the blobs by digest — `files` the model, `adapters` a LoRA on top — and streams its progress as NDJSON,
ending `{"status": "success"}` or an `{"error": …}` line."""

from __future__ import annotations

import asyncio
import hashlib
import re
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import orjson
from yarl import URL

from ..domain import DeadlineExceeded, FailedPrecondition, ForgeError, ProviderProtocolError, ProviderUnavailable
from .providers.upstream_errors import error_message, upstream_error

__all__ = ["CreatedModel", "OllamaDeployer", "model_name_problem", "normalized_host", "normalized_name"]

_CHUNK = 1 << 20
# Ollama's name grammar (types/model/name.go), without the registry host: [namespace/]model[:tag].
_PART = r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,79}"
_NAME = re.compile(rf"(?:{_PART}/)?{_PART}(?::[A-Za-z0-9_][A-Za-z0-9_.-]{{0,79}})?")


def model_name_problem(name: str) -> str | None:
    """Why Ollama would refuse `name` as a model name; None when it is fine."""
    if _NAME.fullmatch(name):
        return None
    return "an Ollama model name is [namespace/]name[:tag] of letters, digits, '_', '.' and '-' (80 each at most)"


def normalized_name(name: str) -> str:
    """Ollama lists `name` as `name:latest`."""
    return name if ":" in name else f"{name}:latest"


def normalized_host(raw: str) -> str | None:
    """`http://host:port` from what OLLAMA_HOST accepts (a bare host:port too); None when it is not a URL."""
    text = raw.strip().rstrip("/")
    url = URL(text if "://" in text else f"http://{text}")
    if url.scheme not in ("http", "https") or not url.host:
        return None
    return str(url)


@dataclass(frozen=True, slots=True)
class CreatedModel:
    name: str
    host: str
    files: dict[str, str]
    """File name → blob digest of the model."""
    adapters: dict[str, str] = field(default_factory=dict)
    uploaded: tuple[str, ...] = ()
    """Digests that were sent (the rest were already on the server)."""


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return f"sha256:{h.hexdigest()}"


async def _chunks(path: Path) -> AsyncIterator[bytes]:
    f = await asyncio.to_thread(path.open, "rb")
    try:
        while chunk := await asyncio.to_thread(f.read, _CHUNK):
            yield chunk
    finally:
        f.close()


class OllamaDeployer:
    def __init__(self, timeout_s: float = 1800.0) -> None:
        # A big model takes minutes to upload and to import; what must not stall is the connection.
        self._timeout = aiohttp.ClientTimeout(total=timeout_s, sock_connect=10.0, sock_read=300.0)
        self._digests: dict[tuple[Path, int, int], str] = {}

    async def digest(self, path: Path) -> str:
        """The blob digest of a file, remembered while the file is unchanged (a base GGUF is sent many times)."""
        stat = await asyncio.to_thread(path.stat)
        key = (path, stat.st_size, stat.st_mtime_ns)
        if key not in self._digests:
            self._digests[key] = await asyncio.to_thread(_sha256, path)
        return self._digests[key]

    async def create(
        self, host: str, model: str, files: Mapping[str, Path], adapters: Mapping[str, Path]
    ) -> CreatedModel:
        """Uploads what the server lacks and creates `model`; raises UNAVAILABLE when Ollama cannot be reached,
        FAILED_PRECONDITION when it refuses the files."""
        paths = {**files, **adapters}
        digests = {name: await self.digest(path) for name, path in paths.items()}
        try:
            async with aiohttp.ClientSession(timeout=self._timeout) as http:
                uploaded = tuple(
                    [digests[n] for n, path in paths.items() if await self._push(http, host, path, digests[n])]
                )
                created = CreatedModel(
                    model, host, {n: digests[n] for n in files}, {n: digests[n] for n in adapters}, uploaded
                )
                await self._create(http, created)
        except ForgeError:
            raise
        except TimeoutError:
            raise DeadlineExceeded(f"Ollama at {host} did not finish creating {model} in time") from None
        except (aiohttp.ClientError, OSError) as exc:
            raise ProviderUnavailable("ollama", f"cannot reach Ollama at {host} ({exc}); set OLLAMA_HOST") from None
        return created

    async def _push(self, http: aiohttp.ClientSession, host: str, path: Path, digest: str) -> bool:
        """Uploads a blob unless the server has it; True when it was sent."""
        where = f"{host}/api/blobs/{digest}"
        async with http.head(where) as found:
            if found.status == 200:
                return False
            if found.status != 404:
                raise _refusal(host, found, await found.read(), "a blob check")
        size = (await asyncio.to_thread(path.stat)).st_size
        async with http.post(where, data=_chunks(path), headers={"Content-Length": str(size)}) as sent:
            if sent.status >= 300:
                raise _refusal(host, sent, await sent.read(), f"the blob {path.name}")
        return True

    async def _create(self, http: aiohttp.ClientSession, model: CreatedModel) -> None:
        body = {"model": model.name, "files": model.files, "stream": True}
        if model.adapters:
            body["adapters"] = model.adapters
        async with http.post(f"{model.host}/api/create", json=body) as resp:
            if resp.status >= 300:
                raise _refusal(model.host, resp, await resp.read(), f"creating {model.name}")
            last = ""
            async for raw in resp.content:
                if not raw.strip():
                    continue
                try:
                    line = orjson.loads(raw)
                except orjson.JSONDecodeError:
                    raise ProviderProtocolError(
                        "ollama", f"/api/create sent a line that is not JSON: {raw[:200]!r}"
                    ) from None
                if not isinstance(line, dict):
                    continue
                if line.get("error"):
                    raise FailedPrecondition(
                        f"Ollama at {model.host} could not create {model.name}: {line['error']}", "OLLAMA_CREATE_FAILED"
                    )
                last = str(line.get("status", ""))
            if last != "success":
                raise ProviderProtocolError("ollama", f"/api/create ended without success (last status {last!r})")


def _refusal(host: str, resp: aiohttp.ClientResponse, body: bytes, what: str) -> ForgeError:
    status = resp.status
    if status in (400, 404, 413, 422):
        return FailedPrecondition(
            f"Ollama at {host} refused {what}: HTTP {status}: {error_message(body)}", "OLLAMA_REFUSED"
        )
    return upstream_error("ollama", "OLLAMA_HOST", status, body, dict(resp.headers))
