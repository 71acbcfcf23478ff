"""A small ledger with hand-computed answers, pinned to a fixed clock."""

from __future__ import annotations

from datetime import UTC, datetime

from forge_rpc.adapters.store.ledger import insert_usage
from forge_rpc.domain.ledger import UsageRecord, UsageStatus

from .conftest import Pool

NOW = 1_800_000_000.0  # 2027-01-15T08:00:00Z, a multiple of 300 and 3600: bucket edges fall on it
NOW_DT = datetime.fromtimestamp(NOW, UTC)

ROWS = [
    UsageRecord("r1", "gpt-a", UsageStatus.COMPLETED, user_id="alice", provider="openai", prompt_tokens=10,
                completion_tokens=20, cost_usd=0.5, latency_ms=100, ttft_ms=20, created_at=NOW - 30,
                client_ip="10.0.0.1", prompt_text="hi", response_text="hello"),
    UsageRecord("r2", "gpt-a", UsageStatus.FAILED, user_id="alice", provider="openai", prompt_tokens=5,
                completion_tokens=5, cost_usd=0.25, latency_ms=300, ttft_ms=100, created_at=NOW - 90,
                error_reason="PROVIDER_UNAVAILABLE"),
    UsageRecord("r3", "gpt-b", UsageStatus.CANCELLED, user_id="bob", provider="ollama", prompt_tokens=1,
                completion_tokens=9, cost_usd=0.0, latency_ms=200, ttft_ms=50, created_at=NOW - 400),
    UsageRecord("r4", "gpt-b", UsageStatus.COMPLETED, user_id="alice", provider="openai", prompt_tokens=100,
                completion_tokens=0, cost_usd=1.0, latency_ms=50, created_at=NOW - 7200),
]  # fmt: skip


async def load(pool: Pool) -> None:
    async with pool.connection() as conn:
        await conn.execute("TRUNCATE usage_ledger")
        await insert_usage(conn, ROWS)
