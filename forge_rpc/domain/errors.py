"""Domain errors: every failure a user can cause or meet carries a code, a reason and the details to act on.

The domain knows no gRPC, so `ErrorCode` mirrors the gRPC status codes by value; `server/errors.py` is the one
place that turns a `ForgeError` into a `google.rpc.Status`.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

__all__ = [
    "DeadlineExceeded",
    "ErrorCode",
    "FailedPrecondition",
    "FieldViolation",
    "ForgeError",
    "InvalidArgument",
    "ModelNotFound",
    "NotFound",
    "PermissionDenied",
    "ProviderAuthError",
    "ProviderProtocolError",
    "ProviderRateLimited",
    "ProviderUnavailable",
    "ResourceExhausted",
    "Unauthenticated",
    "Unimplemented",
]


class ErrorCode(enum.IntEnum):
    """gRPC status codes by value (google.rpc.Code)."""

    CANCELLED = 1
    UNKNOWN = 2
    INVALID_ARGUMENT = 3
    DEADLINE_EXCEEDED = 4
    NOT_FOUND = 5
    ALREADY_EXISTS = 6
    PERMISSION_DENIED = 7
    RESOURCE_EXHAUSTED = 8
    FAILED_PRECONDITION = 9
    ABORTED = 10
    UNIMPLEMENTED = 12
    INTERNAL = 13
    UNAVAILABLE = 14
    UNAUTHENTICATED = 16


@dataclass(frozen=True, slots=True)
class FieldViolation:
    """One bad request field, named by its path in the request (e.g. `chat.messages[1].role`)."""

    field: str
    description: str


@dataclass(slots=True)
class ForgeError(Exception):
    """A failure with everything the caller needs: status code, ErrorInfo reason, and structured details."""

    message: str
    code: ErrorCode = ErrorCode.INTERNAL
    reason: str = "INTERNAL"
    violations: Sequence[FieldViolation] = ()
    retry_after_s: float | None = None
    metadata: dict[str, str] = field(default_factory=dict)
    #: For RESOURCE_EXHAUSTED: (subject, description) pairs for a google.rpc.QuotaFailure.
    quota_violations: Sequence[tuple[str, str]] = ()

    def __str__(self) -> str:
        return self.message


def InvalidArgument(violations: Iterable[FieldViolation], message: str | None = None) -> ForgeError:
    found = tuple(violations)
    text = message or "; ".join(f"{v.field}: {v.description}" for v in found)
    return ForgeError(text, ErrorCode.INVALID_ARGUMENT, "INVALID_ARGUMENT", violations=found)


def ModelNotFound(model: str, available: Sequence[str]) -> ForgeError:
    shown = ", ".join(available[:50]) or "none (configure a provider: see README)"
    more = f" and {len(available) - 50} more" if len(available) > 50 else ""
    return ForgeError(
        f"model {model!r} is not served by any configured provider; available models: {shown}{more}",
        ErrorCode.NOT_FOUND,
        "MODEL_NOT_FOUND",
        metadata={"model": model},
    )


def NotFound(what: str, name: str) -> ForgeError:
    return ForgeError(f"{what} {name!r} not found", ErrorCode.NOT_FOUND, "NOT_FOUND", metadata={what: name})


def ProviderAuthError(provider: str, env_var: str, detail: str) -> ForgeError:
    return ForgeError(
        f"provider {provider!r} rejected forge's credentials ({detail}); set {env_var} or the model's api_key",
        ErrorCode.FAILED_PRECONDITION,
        "PROVIDER_AUTH",
        metadata={"provider": provider, "env": env_var},
    )


def ProviderRateLimited(provider: str, retry_after_s: float | None, detail: str) -> ForgeError:
    return ForgeError(
        f"provider {provider!r} is rate limiting requests: {detail}",
        ErrorCode.RESOURCE_EXHAUSTED,
        "PROVIDER_RATE_LIMITED",
        retry_after_s=retry_after_s if retry_after_s is not None else 1.0,
        metadata={"provider": provider},
        quota_violations=((f"provider:{provider}", detail),),
    )


def ProviderUnavailable(provider: str, detail: str, retry_after_s: float | None = None) -> ForgeError:
    return ForgeError(
        f"provider {provider!r} is unavailable: {detail}",
        ErrorCode.UNAVAILABLE,
        "PROVIDER_UNAVAILABLE",
        retry_after_s=retry_after_s,
        metadata={"provider": provider},
    )


def ProviderProtocolError(provider: str, detail: str) -> ForgeError:
    return ForgeError(
        f"provider {provider!r} sent a broken response: {detail}",
        ErrorCode.UNAVAILABLE,
        "PROVIDER_PROTOCOL",
        metadata={"provider": provider},
    )


def DeadlineExceeded(detail: str) -> ForgeError:
    return ForgeError(detail, ErrorCode.DEADLINE_EXCEEDED, "DEADLINE_EXCEEDED")


def ResourceExhausted(detail: str, subject: str, retry_after_s: float = 1.0) -> ForgeError:
    return ForgeError(
        detail,
        ErrorCode.RESOURCE_EXHAUSTED,
        "RESOURCE_EXHAUSTED",
        retry_after_s=retry_after_s,
        quota_violations=((subject, detail),),
    )


def FailedPrecondition(detail: str, reason: str = "FAILED_PRECONDITION") -> ForgeError:
    return ForgeError(detail, ErrorCode.FAILED_PRECONDITION, reason)


def Unimplemented(what: str, issue: str) -> ForgeError:
    return ForgeError(
        f"{what} is designed in the contract but not implemented in this release ({issue})",
        ErrorCode.UNIMPLEMENTED,
        "UNIMPLEMENTED",
    )


def PermissionDenied(detail: str, reason: str = "PERMISSION_DENIED") -> ForgeError:
    return ForgeError(detail, ErrorCode.PERMISSION_DENIED, reason)


def Unauthenticated(detail: str, reason: str = "UNAUTHENTICATED") -> ForgeError:
    return ForgeError(detail, ErrorCode.UNAUTHENTICATED, reason)
