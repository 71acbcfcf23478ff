"""How a failed attempt continues: which failures are worth another try, how long to wait (backoff, the
upstream's Retry-After up to a cap), and which model groups to fall back to (LiteLLM's `fallbacks`,
`context_window_fallbacks` and `default_fallbacks`)."""

from __future__ import annotations

import enum
import random
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from .errors import ErrorCode, ForgeError

__all__ = [
    "CircuitOpen",
    "FailureKind",
    "Fallbacks",
    "RetryPolicy",
    "classify",
    "counts_against_deployment",
    "is_context_window_exceeded",
]


class FailureKind(enum.Enum):
    RETRY = "retry"
    """The deployment failed (down, overloaded, rate limited, too slow): try again, elsewhere if possible, then
    fall back to the next group."""
    CONTEXT = "context"
    """The prompt does not fit this model: no retry, fall back to a group with a larger window."""
    FINAL = "final"
    """The request itself is wrong (or the caller's deadline passed): another deployment would say the same."""


# Reasons a provider adapter gives a deployment's own failure. PROVIDER_PROTOCOL covers a stream cut before
# its first token, which another attempt may well get through.
_RETRY_REASONS = frozenset({"PROVIDER_UNAVAILABLE", "PROVIDER_PROTOCOL", "PROVIDER_RATE_LIMITED", "CIRCUIT_OPEN"})

# Providers say "context too long" in a 400 with their own words: OpenAI (`context_length_exceeded`, "maximum
# context length"), vLLM and llama.cpp ("context window", "exceeds the context"), Anthropic ("prompt is too
# long"), litellm's ContextWindowExceededError, and forge's local model ("the local model's context holds").
_CONTEXT_WORDS = re.compile(
    r"context[ _-]?(length|window)|maximum context|prompt is too long|exceeds? the context|context holds",
    re.IGNORECASE,
)


def is_context_window_exceeded(err: ForgeError) -> bool:
    if err.reason == "CONTEXT_WINDOW_EXCEEDED":
        return True
    return err.code is ErrorCode.INVALID_ARGUMENT and _CONTEXT_WORDS.search(err.message) is not None


def classify(err: ForgeError, timed_out_by_router: bool = False) -> FailureKind:
    """`timed_out_by_router`: the attempt's own `timeout` (not the caller's deadline) ran out."""
    if err.reason in _RETRY_REASONS or err.code is ErrorCode.UNAVAILABLE:
        return FailureKind.RETRY
    if err.code is ErrorCode.DEADLINE_EXCEEDED and timed_out_by_router:
        return FailureKind.RETRY
    if is_context_window_exceeded(err):
        return FailureKind.CONTEXT
    return FailureKind.FINAL


def counts_against_deployment(err: ForgeError, kind: FailureKind) -> bool:
    """Whether the failure says something about the deployment (its breaker, its passive health): an outage,
    a rate limit, a timeout of its own, or credentials it rejects — not a request it rightly refused."""
    return (kind is FailureKind.RETRY and err.reason != "CIRCUIT_OPEN") or err.reason == "PROVIDER_AUTH"


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    num_retries: int = 0
    """Further attempts in a model group after the first (LiteLLM's `num_retries`)."""
    min_wait_s: float = 0.0
    """Least wait before retrying a deployment already tried (LiteLLM's `retry_after`)."""
    max_wait_s: float = 10.0
    """Longest Retry-After honoured: an upstream asking for more is not retried; the chain moves on."""
    backoff_s: float = 0.1
    """First step of the exponential backoff when the upstream names no Retry-After."""
    timeout_s: float | None = None
    """Limit of one attempt (LiteLLM's `timeout`); the caller's deadline bounds the whole call anyway."""

    def wait_before(self, retry: int, err: ForgeError, rng: random.Random) -> float | None:
        """Seconds before retry number `retry` (1-based) on a deployment this call already tried, or None when
        the upstream asks for longer than `max_wait_s`. Jitter keeps replicas from retrying in step."""
        asked = err.retry_after_s or 0.0
        if asked > self.max_wait_s:
            return None
        backoff = min(self.max_wait_s, self.backoff_s * 2.0 ** (retry - 1)) * (0.5 + rng.random() / 2)
        return max(self.min_wait_s, asked, backoff)


@dataclass(frozen=True, slots=True)
class Fallbacks:
    """Model group → the groups to try, in order, when it fails."""

    general: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    context_window: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    """Used instead of `general` when the prompt is too long for the group."""
    default: tuple[str, ...] = ()
    """For groups `general` does not name (LiteLLM's `default_fallbacks`)."""

    def chain(self, group: str, kind: FailureKind) -> tuple[str, ...]:
        if kind is FailureKind.CONTEXT and group in self.context_window:
            return self.context_window[group]
        return self.general.get(group, self.default)


def CircuitOpen(group: str, retry_after_s: float, last_error: str) -> ForgeError:
    """Every deployment of `group` is cooling down after failures, and no fallback could serve instead."""
    cause = f"; last error: {last_error}" if last_error else ""
    return ForgeError(
        f"model {group!r} is temporarily unavailable: the circuit breaker of every deployment is open{cause}",
        ErrorCode.UNAVAILABLE,
        "CIRCUIT_OPEN",
        retry_after_s=max(retry_after_s, 0.001),
        metadata={"model": group},
    )
