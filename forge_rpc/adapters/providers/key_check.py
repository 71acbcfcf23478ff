"""Testing an API key against its provider with the cheapest call that needs one: listing models. Nothing is
generated and nothing is billed. The key travels in a header only, never in a URL, so no error text or log
line can carry it."""

from __future__ import annotations

import time
from dataclasses import dataclass

import aiohttp
import orjson

from .factory import ProviderSpec, base_url

__all__ = ["KeyCheck", "check_key"]

TIMEOUT_S = 10.0

# Providers reached through litellm that still have a free, authenticated model listing.
_ANTHROPIC = "https://api.anthropic.com"
_GEMINI = "https://generativelanguage.googleapis.com/v1beta"


@dataclass(frozen=True, slots=True)
class KeyCheck:
    valid: bool | None
    """None when the provider could not tell (unreachable, an unexpected answer, no way to test)."""
    model_count: int
    latency_ms: float
    detail: str


def _request(spec: ProviderSpec, key: str) -> tuple[str, dict[str, str]] | None:
    if spec.adapter == "openai":
        return base_url(spec, "").rstrip("/") + "/models", {"authorization": f"Bearer {key}"}
    if spec.kind == "anthropic":
        base = (spec.api_base or _ANTHROPIC).rstrip("/")
        return base + "/v1/models", {"x-api-key": key, "anthropic-version": "2023-06-01"}
    if spec.kind == "gemini":
        return (spec.api_base or _GEMINI).rstrip("/") + "/models", {"x-goog-api-key": key}
    return None


def _count(body: bytes) -> int:
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return 0
    if isinstance(data, dict):
        for name in ("data", "models"):
            if isinstance(data.get(name), list):
                return len(data[name])
    return 0


async def check_key(spec: ProviderSpec, key: str) -> KeyCheck:
    request = _request(spec, key)
    if request is None:
        return KeyCheck(None, 0, 0.0, f"keys of {spec.kind!r} cannot be tested without a billed request")
    url, headers = request
    started = time.perf_counter()
    try:
        # A session of its own: key tests are rare, and the provider's pooled session belongs to traffic.
        async with (
            aiohttp.ClientSession() as http,
            http.get(url, headers=headers, timeout=aiohttp.ClientTimeout(total=TIMEOUT_S)) as resp,
        ):
            body = await resp.read()
            status = resp.status
    except TimeoutError:
        return KeyCheck(None, 0, TIMEOUT_S * 1000, f"{url} did not answer within {TIMEOUT_S:.0f}s")
    except (aiohttp.ClientError, OSError) as exc:
        return KeyCheck(None, 0, (time.perf_counter() - started) * 1000, f"cannot reach {url}: {type(exc).__name__}")
    latency = round((time.perf_counter() - started) * 1000, 2)
    if status == 200:
        return KeyCheck(True, _count(body), latency, "accepted")
    # Gemini answers a bad key with 400 API_KEY_INVALID rather than 401.
    if status in (401, 403) or (status == 400 and b"API_KEY_INVALID" in body):
        return KeyCheck(False, 0, latency, f"rejected (HTTP {status})")
    return KeyCheck(None, 0, latency, f"unexpected answer HTTP {status} from {url}")
