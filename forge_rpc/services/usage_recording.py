"""`Generation`: one generation's usage-ledger row in the making, shared by every servicer that generates (chat,
embeddings, RAG answers, tasks) so each writes exactly one row, however the call ends.

Use it as a `with` block around the work: leaving normally records a completed row; a ForgeError a failed one
(with its reason); a cancel (client gone, deadline) a cancelled one with the usage produced so far. It also
fills the call's `call_usage`, which rate-limit and budget policies settle against.
"""

from __future__ import annotations

import asyncio
import time
from types import TracebackType

from ..domain import ForgeError, Usage
from ..domain.ledger import Operation, UsageRecord, UsageSink, UsageStatus, client_ip_from_peer
from .context import CallContext, call_usage, metadata_value, peer_of, principal, request_id

__all__ = ["Generation"]


class Generation:
    __slots__ = (
        "_context",
        "_created",
        "_sink",
        "_started",
        "model",
        "operation",
        "prompt_text",
        "provider",
        "reason",
        "response_text",
        "status",
        "ttft_ms",
        "usage",
    )

    def __init__(self, sink: UsageSink | None, operation: Operation, model: str, context: CallContext) -> None:
        self._sink = sink
        self._context = context
        self.operation = operation
        self.model = model
        self.provider: str | None = None
        self.usage = Usage()
        self.status = UsageStatus.FAILED
        self.reason: str | None = "INTERNAL"
        self.ttft_ms: int | None = None
        self.prompt_text: str | None = None
        self.response_text: str | None = None
        self._started = time.perf_counter()
        self._created = time.time()

    def first_token(self) -> None:
        if self.ttft_ms is None:
            self.ttft_ms = int((time.perf_counter() - self._started) * 1000)

    def completed(self, model: str, provider: str | None, usage: Usage) -> None:
        self.model, self.provider, self.usage = model, provider, usage
        self.status, self.reason = UsageStatus.COMPLETED, None

    def __enter__(self) -> Generation:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        if isinstance(exc, ForgeError):
            self.status, self.reason = UsageStatus.FAILED, exc.reason
        elif isinstance(exc, (asyncio.CancelledError, GeneratorExit)):
            self.status, self.reason = UsageStatus.CANCELLED, "CANCELLED"
        self._publish()

    def _publish(self) -> None:
        spent = call_usage.get(None)
        if spent is not None:
            spent.model = self.model
            spent.prompt_tokens += self.usage.prompt_tokens
            spent.completion_tokens += self.usage.completion_tokens
            spent.cost_usd += self.usage.cost_usd
        if self._sink is None:
            return
        who = principal.get()
        ctx = self._context
        self._sink.record(
            UsageRecord(
                request_id=request_id.get(),
                model=self.model,
                status=self.status,
                operation=self.operation,
                user_id=who.user_id,
                api_key_id=who.api_key_id,
                provider=self.provider,
                prompt_tokens=self.usage.prompt_tokens,
                completion_tokens=self.usage.completion_tokens,
                cost_usd=self.usage.cost_usd,
                latency_ms=int((time.perf_counter() - self._started) * 1000),
                ttft_ms=self.ttft_ms,
                error_reason=self.reason if self.status is not UsageStatus.COMPLETED else None,
                client_ip=client_ip_from_peer(metadata_value(ctx, "x-forge-client-ip") or peer_of(ctx)),
                prompt_text=self.prompt_text,
                response_text=self.response_text,
                created_at=self._created,
            )
        )
