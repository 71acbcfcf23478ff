"""Turns a provider's HTTP error into the ForgeError a caller can act on (shared by every HTTP adapter)."""

from __future__ import annotations

from collections.abc import Mapping

import orjson

from ...domain import (
    ErrorCode,
    ForgeError,
    ProviderAuthError,
    ProviderRateLimited,
    ProviderUnavailable,
)

__all__ = ["error_message", "upstream_error"]


def error_message(body: bytes) -> str:
    """The human part of an error body in OpenAI's, Ollama's or Anthropic's shape, else the raw text."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return body.decode("utf-8", "replace").strip()[:500] or "no details"
    if isinstance(data, dict):
        err = data.get("error", data.get("detail", data.get("message")))
        if isinstance(err, dict):
            return str(err.get("message") or err)[:500]
        if err:
            return str(err)[:500]
    return str(data)[:500]


def _error_code(body: bytes) -> str | None:
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    err = data.get("error") if isinstance(data, dict) else None
    code = err.get("code") if isinstance(err, dict) else None
    return code if isinstance(code, str) else None


def retry_after(headers: Mapping[str, str]) -> float | None:
    raw = headers.get("retry-after") or headers.get("Retry-After")
    try:
        return max(0.0, float(raw)) if raw else None
    except ValueError:
        return None  # an HTTP-date: rare from LLM APIs; the caller's default applies


def upstream_error(provider: str, env_var: str, status: int, body: bytes, headers: Mapping[str, str]) -> ForgeError:
    detail = f"HTTP {status}: {error_message(body)}"
    if status in (401, 403):
        return ProviderAuthError(provider, env_var, detail)
    if status == 429:
        return ProviderRateLimited(provider, retry_after(headers), detail)
    if status == 404:
        return ForgeError(
            f"provider {provider!r} does not know the model: {detail}",
            ErrorCode.NOT_FOUND,
            "MODEL_NOT_FOUND",
            metadata={"provider": provider},
        )
    if status in (400, 413, 422):
        # OpenAI's code for a prompt over the model's window: a distinct reason so a router can fall back to a
        # larger-context model group, and a client can tell it from a malformed request.
        reason = "CONTEXT_WINDOW_EXCEEDED" if _error_code(body) == "context_length_exceeded" else "INVALID_ARGUMENT"
        return ForgeError(
            f"provider {provider!r} rejected the request: {detail}",
            ErrorCode.INVALID_ARGUMENT,
            reason,
            metadata={"provider": provider},
        )
    if status in (408, 504):
        return ForgeError(
            f"provider {provider!r} timed out: {detail}",
            ErrorCode.DEADLINE_EXCEEDED,
            "DEADLINE_EXCEEDED",
            metadata={"provider": provider},
        )
    return ProviderUnavailable(provider, detail, retry_after(headers))
