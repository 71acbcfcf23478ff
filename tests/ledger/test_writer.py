"""UsageLedger against real PostgreSQL: exactly once per request id, nothing lost on close or outage."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

from forge_rpc.adapters.store.ledger import UsageLedger
from forge_rpc.domain.ledger import Operation, UsageRecord, UsageStatus, client_ip_from_peer
from forge_rpc.server.database import EmbeddedPostgres

from .conftest import Pool, count_rows, wait_for


def rec(rid: str, **kw: Any) -> UsageRecord:
    return UsageRecord(rid, kw.pop("model", "m"), kw.pop("status", UsageStatus.COMPLETED), **kw)


async def test_duplicate_request_ids_count_once(empty_ledger: Pool) -> None:
    ledger = UsageLedger(empty_ledger, flush_interval_s=0.05)
    await ledger.start()
    ledger.record(rec("a", prompt_tokens=1))
    ledger.record(rec("a", prompt_tokens=2))  # same batch
    ledger.record(rec("b"))
    await ledger.flush()
    ledger.record(rec("a", prompt_tokens=3))  # a later batch: a retried request
    ledger.record(rec("b"))
    await ledger.close()
    assert await count_rows(empty_ledger) == 2
    assert await count_rows(empty_ledger, "request_id = 'a' AND prompt_tokens = 1") == 1  # the first one wins
    assert ledger.written == 2


async def test_close_flushes_everything(empty_ledger: Pool) -> None:
    # A long interval: nothing is written before close() unless the batch size triggers it.
    ledger = UsageLedger(empty_ledger, flush_interval_s=60)
    await ledger.start()
    for i in range(1000):
        ledger.record(rec(f"r{i}", completion_tokens=i))
    await ledger.close()
    assert ledger.pending == 0
    assert await count_rows(empty_ledger) == 1000
    assert await count_rows(empty_ledger, "completion_tokens = 999") == 1


async def test_throughput(empty_ledger: Pool) -> None:
    ledger = UsageLedger(empty_ledger, flush_interval_s=60)
    n = 20_000
    started = time.perf_counter()
    for i in range(n):
        ledger.record(rec(f"t{i}", user_id="u", provider="p", prompt_tokens=10, completion_tokens=20, latency_ms=5))
    recorded = time.perf_counter() - started
    started = time.perf_counter()
    await ledger.flush()
    flushed = time.perf_counter() - started
    print(f"\nrecord(): {recorded / n * 1e6:.2f} µs/row; flush: {n / flushed:,.0f} rows/s")
    assert await count_rows(empty_ledger) == n


async def test_cancelled_rows_keep_partial_usage(empty_ledger: Pool) -> None:
    ledger = UsageLedger(empty_ledger)
    ledger.record(
        rec(
            "c1",
            status=UsageStatus.CANCELLED,
            operation=Operation.CHAT,
            prompt_tokens=12,
            completion_tokens=7,
            cost_usd=0.0003,
            latency_ms=250,
            ttft_ms=40,
            error_reason="CANCELLED",
            client_ip="ipv6:[::1]:4000",
        )
    )
    await ledger.close()
    async with empty_ledger.connection() as conn:
        cur = await conn.execute(
            "SELECT status, prompt_tokens, completion_tokens, total_tokens, cost_usd::float8, ttft_ms, error_reason,"
            " host(client_ip) FROM usage_ledger"
        )
        assert await cur.fetchall() == [("cancelled", 12, 7, 19, 0.0003, 40, "CANCELLED", "::1")]


async def test_bounded_buffer_drops_and_counts(empty_ledger: Pool) -> None:
    ledger = UsageLedger(empty_ledger, max_buffered=10, batch_size=100)
    for i in range(15):
        ledger.record(rec(f"d{i}"))
    assert (ledger.pending, ledger.dropped) == (10, 5)
    await ledger.close()
    assert await count_rows(empty_ledger) == 10


async def test_a_bad_row_does_not_block_the_batch(empty_ledger: Pool) -> None:
    ledger = UsageLedger(empty_ledger)
    ledger.record(rec("good1"))
    ledger.record(rec("bad", prompt_text="nul \x00 byte"))  # PostgreSQL text cannot hold NUL
    ledger.record(rec("good2"))
    await ledger.close()
    assert await count_rows(empty_ledger) == 2
    assert ledger.rejected == 1


@pytest.mark.parametrize(
    ("value", "ip"),
    [
        ("ipv4:10.1.2.3:5000", "10.1.2.3"),
        ("ipv6:[2001:db8::1]:443", "2001:db8::1"),
        ("unix:/tmp/sock", None),
        ("203.0.113.9, 10.0.0.1", "203.0.113.9"),
        ("::1", "::1"),
        ("nonsense", None),
        ("", None),
    ],
)
def test_client_ip_from_peer(value: str, ip: str | None) -> None:
    assert client_ip_from_peer(value) == ip


async def _set_reachable(embedded_pg: EmbeddedPostgres, url: str, reachable: bool) -> None:
    """Makes the test database refuse (and drop) every connection, or accept them again."""
    name = conninfo_to_dict(url)["dbname"]
    async with await psycopg.AsyncConnection.connect(embedded_pg.url_for("postgres"), autocommit=True) as conn:
        await conn.execute(
            sql.SQL("ALTER DATABASE {} ALLOW_CONNECTIONS {}").format(
                sql.Identifier(str(name)), sql.SQL("true" if reachable else "false")
            )
        )
        if not reachable:
            await conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
                [name],
            )


async def test_failed_flush_retries_and_loses_nothing(
    empty_ledger: Pool, database: str, embedded_pg: EmbeddedPostgres
) -> None:
    ledger = UsageLedger(empty_ledger, flush_interval_s=0.05, retry_initial_s=0.05, retry_max_s=0.5)
    await ledger.start()
    await _set_reachable(embedded_pg, database, False)
    try:
        for i in range(50):
            ledger.record(rec(f"o{i}"))

        async def failed_twice() -> bool:
            return ledger.failed_flushes >= 2

        await wait_for(failed_twice)
        assert ledger.pending == 50  # nothing left the buffer while the database was away
    finally:
        await _set_reachable(embedded_pg, database, True)
    for i in range(50, 60):
        ledger.record(rec(f"o{i}"))

    async def drained() -> bool:
        return ledger.pending == 0

    await wait_for(drained, timeout=30)
    await ledger.close()
    assert await count_rows(empty_ledger) == 60


async def test_close_retries_until_the_database_is_back(
    empty_ledger: Pool, database: str, embedded_pg: EmbeddedPostgres
) -> None:
    ledger = UsageLedger(empty_ledger, flush_interval_s=60, retry_initial_s=0.05, retry_max_s=0.5)
    await ledger.start()
    for i in range(30):
        ledger.record(rec(f"s{i}"))
    await _set_reachable(embedded_pg, database, False)
    closing = asyncio.create_task(ledger.close())
    await asyncio.sleep(0.5)
    assert not closing.done()
    await _set_reachable(embedded_pg, database, True)
    await asyncio.wait_for(closing, 30)
    assert await count_rows(empty_ledger) == 30


async def test_pool_bound_at_start_keeps_earlier_records(empty_ledger: Pool) -> None:
    # The composition root builds servicers (and the ledger) before storage starts.
    ledger = UsageLedger(flush_interval_s=0.05)
    ledger.record(rec("early"))
    await ledger.start(empty_ledger)
    await ledger.close()
    assert await count_rows(empty_ledger) == 1
