"""The usage ledger's vocabulary: one `UsageRecord` per generation, and the port that accepts it.

Pure types; the batched PostgreSQL writer is `adapters/store/ledger.py`. A record is built once, when a call
ends (completed, cancelled with its partial usage, or failed with its reason), and handed to a `UsageSink`
whose `record()` never blocks the hot path.
"""

from __future__ import annotations

import enum
import functools
import ipaddress
import time
from dataclasses import dataclass, field
from typing import Protocol

__all__ = ["Operation", "UsageRecord", "UsageSink", "UsageStatus", "client_ip_from_peer"]


class UsageStatus(enum.StrEnum):
    """How the generation ended; the ledger's `status` column."""

    COMPLETED = "completed"
    CANCELLED = "cancelled"
    """The client left (or the deadline hit); the row keeps the usage produced until then."""
    FAILED = "failed"


class Operation(enum.StrEnum):
    """What kind of generation; the ledger's `operation` column."""

    CHAT = "chat"
    EMBEDDING = "embedding"
    RAG = "rag"


@dataclass(frozen=True, slots=True)
class UsageRecord:
    """One ledger row. `request_id` is the idempotency key: a second record with the same id is ignored."""

    request_id: str
    model: str
    status: UsageStatus
    operation: Operation = Operation.CHAT
    user_id: str | None = None
    api_key_id: str | None = None
    """The key's id, never its secret."""
    provider: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    latency_ms: int | None = None
    """Request start to last byte."""
    ttft_ms: int | None = None
    """None when no token was produced."""
    error_reason: str | None = None
    """ErrorInfo reason (UPPER_SNAKE) of a failed or cancelled call."""
    client_ip: str | None = None
    """A bare address (see `client_ip_from_peer`); anything else would fail the `inet` column."""
    prompt_text: str | None = None
    """Only when content logging is enabled."""
    response_text: str | None = None
    created_at: float = field(default_factory=time.time)
    """When the request started (epoch seconds): rows are written in batches, so insert time would skew
    per-minute history."""

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


class UsageSink(Protocol):
    """Where servicers hand finished calls; `record` is synchronous and must not wait for I/O."""

    def record(self, rec: UsageRecord) -> None: ...


@functools.lru_cache(maxsize=4096)  # a replica sees the same few peers and proxies over and over
def client_ip_from_peer(value: str | None) -> str | None:
    """A bare IP address from an `x-forge-client-ip` header value or a gRPC peer string
    (`ipv4:10.0.0.1:5000`, `ipv6:[::1]:5000`, `unix:/path`); None when there is none."""
    if not value:
        return None
    text = value.split(",", 1)[0].strip()  # an X-Forwarded-For list: the first hop is the client
    kind, sep, rest = text.partition(":")
    if sep and kind in ("ipv4", "ipv6"):
        text = rest
    elif sep and kind == "unix":
        return None
    if text.startswith("["):  # [v6]:port
        text = text[1 : text.find("]")] if "]" in text else text[1:]
    elif text.count(":") == 1:  # v4:port
        text = text.split(":", 1)[0]
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        return None
