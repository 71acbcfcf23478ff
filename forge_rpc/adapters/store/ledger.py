"""UsageLedger: the batched writer behind `UsageSink`. `record()` appends to memory; a background task writes.

Why batch: one INSERT per request would put a database round trip (and a pool checkout) on every call's tail;
one statement of up to 500 rows costs about as much as a single row. The statement binds the batch as one JSON
array and expands it in the database, so its text never changes (prepared once per connection) whatever the batch
size, and `ON CONFLICT (request_id) DO NOTHING` makes a retried batch, or a retried request id, count once.

Durability: rows leave the buffer only after their INSERT committed. A failed flush keeps them and retries
with exponential backoff; `close()` keeps retrying for `close_timeout_s` so a shutdown loses nothing that was
recorded unless the database stays unreachable past it (then the loss is logged with a count). What a crash
(kill -9) loses is bounded by one flush interval.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Sequence
from itertools import islice
from typing import Any

import orjson
import psycopg
from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from ...domain.ledger import UsageRecord, client_ip_from_peer

__all__ = ["UsageLedger", "insert_usage"]

log = logging.getLogger("forge.ledger")

_INT4_MAX = 2**31 - 1

_INSERT = """
INSERT INTO usage_ledger (
    request_id, operation, user_id, api_key_id, model, provider, prompt_tokens, completion_tokens, cost_usd,
    latency_ms, ttft_ms, status, error_reason, client_ip, prompt_text, response_text, created_at
)
SELECT request_id, operation, user_id, api_key_id, model, provider, prompt_tokens, completion_tokens,
       cost_usd::numeric, latency_ms, ttft_ms, status, error_reason, client_ip::inet, prompt_text, response_text,
       to_timestamp(created_at)
FROM jsonb_to_recordset(%s::jsonb) AS r(
    request_id text, operation text, user_id text, api_key_id text, model text, provider text, prompt_tokens int4,
    completion_tokens int4, cost_usd float8, latency_ms int4, ttft_ms int4, status text, error_reason text,
    client_ip text, prompt_text text, response_text text, created_at float8
)
ON CONFLICT (request_id) DO NOTHING
"""

# Errors that no retry can fix: the rows themselves are bad. Anything else (connection lost, server
# restarting, pool exhausted) is transient and retried with the whole batch kept.
_ROW_ERRORS = (psycopg.errors.DataError, psycopg.errors.IntegrityError)


def _count(n: int) -> int:
    return max(0, min(int(n), _INT4_MAX))


def _ms(n: int | None) -> int | None:
    return None if n is None else _count(n)


def _batch_json(rows: Sequence[UsageRecord]) -> str:
    """The batch as one JSON array for `_INSERT`: a single text parameter, encoded in C, where one array
    parameter per column had psycopg dump every value in Python. Values a CHECK constraint would reject are
    clamped here, so one odd record cannot fail a batch."""
    return orjson.dumps(
        [
            {
                "request_id": r.request_id,
                "operation": r.operation.value,
                "user_id": r.user_id,
                "api_key_id": r.api_key_id,
                "model": r.model,
                "provider": r.provider,
                "prompt_tokens": _count(r.prompt_tokens),
                "completion_tokens": _count(r.completion_tokens),
                "cost_usd": max(0.0, float(r.cost_usd)),
                "latency_ms": _ms(r.latency_ms),
                "ttft_ms": _ms(r.ttft_ms),
                "status": r.status.value,
                "error_reason": r.error_reason,
                "client_ip": client_ip_from_peer(r.client_ip),
                "prompt_text": r.prompt_text,
                "response_text": r.response_text,
                "created_at": r.created_at,
            }
            for r in rows
        ]
    ).decode()


async def insert_usage(conn: AsyncConnection[Any], rows: Sequence[UsageRecord]) -> int:
    """Inserts `rows` in one statement; returns how many were new (the rest had a known request id)."""
    cur = await conn.execute(_INSERT, (_batch_json(rows),))
    return max(cur.rowcount, 0)


class UsageLedger:
    """Batched, idempotent ledger writer. Owned by the composition root: `await start()` after the pool is
    open, `await close()` before the pool closes."""

    def __init__(
        self,
        pool: AsyncConnectionPool[AsyncConnection[Any]] | None = None,
        *,
        flush_interval_s: float = 0.2,
        batch_size: int = 500,
        max_buffered: int = 100_000,
        retry_initial_s: float = 0.2,
        retry_max_s: float = 10.0,
        close_timeout_s: float = 30.0,
    ) -> None:
        self._pool = pool
        self._interval = flush_interval_s
        self._batch = batch_size
        self._max = max_buffered
        self._retry_initial = retry_initial_s
        self._retry_max = retry_max_s
        self._close_timeout = close_timeout_s
        self._buffer: deque[UsageRecord] = deque()
        self._wake = asyncio.Event()
        self._stop = asyncio.Event()
        self._flush_lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self.dropped = 0
        """Records refused because the buffer was full (the database has been unreachable for long)."""
        self.written = 0
        """Rows inserted (duplicates of a known request id not counted)."""
        self.failed_flushes = 0
        self.rejected = 0
        """Rows the database refused as invalid (logged and dropped so they cannot block the rest)."""

    def _require_pool(self) -> AsyncConnectionPool[AsyncConnection[Any]]:
        if self._pool is None:
            raise RuntimeError("UsageLedger has no pool: pass it to the constructor or start()")
        return self._pool

    @property
    def pending(self) -> int:
        return len(self._buffer)

    def record(self, rec: UsageRecord) -> None:
        """Queues one row; never waits. Past `max_buffered` the record is dropped and counted."""
        if len(self._buffer) >= self._max:
            self.dropped += 1
            # Powers of two: a long outage logs a handful of lines, not one per request.
            if self.dropped & (self.dropped - 1) == 0:
                log.error("usage ledger buffer full (%d rows); %d records dropped so far", self._max, self.dropped)
            return
        self._buffer.append(rec)
        if len(self._buffer) >= self._batch:
            self._wake.set()

    async def start(self, pool: AsyncConnectionPool[AsyncConnection[Any]] | None = None) -> None:
        """Starts the flusher. `pool` binds the pool when it did not exist at construction (the composition root
        builds servicers before storage starts); records made before this are kept and written."""
        if pool is not None:
            self._pool = pool
        if self._task is None:
            self._stop.clear()
            self._task = asyncio.create_task(self._run(), name="usage-ledger-flusher")

    async def close(self) -> None:
        """Stops the background task and writes everything recorded so far (retrying for `close_timeout_s`)."""
        self._stop.set()
        self._wake.set()
        task, self._task = self._task, None
        if task is not None:
            await task
        deadline = time.monotonic() + self._close_timeout
        delay = self._retry_initial
        while self._buffer:
            try:
                await self.flush()
            except (psycopg.Error, PoolTimeout) as exc:
                if time.monotonic() + delay > deadline:
                    log.error("usage ledger closed with %d rows unwritten: %s", len(self._buffer), exc)
                    return
                await asyncio.sleep(delay)
                delay = min(delay * 2, self._retry_max)

    async def write_now(self, rec: UsageRecord) -> bool:
        """Inserts one row at once, bypassing the buffer, for callers that acknowledge durability (external
        usage via RecordUsage); False when its request id was already recorded."""
        async with self._require_pool().connection() as conn:
            return await insert_usage(conn, [rec]) == 1

    async def flush(self) -> int:
        """Writes every row buffered now, batch by batch; returns rows inserted. Raises on a transient
        database error, with the unwritten rows still buffered."""
        inserted = 0
        async with self._flush_lock:
            while self._buffer:
                n = min(len(self._buffer), self._batch)
                batch = list(islice(self._buffer, n))
                inserted += await self._write(batch)
                # record() only appends on the right, so the first n are still this batch.
                for _ in range(n):
                    self._buffer.popleft()
        self.written += inserted
        return inserted

    async def _write(self, batch: list[UsageRecord]) -> int:
        try:
            async with self._require_pool().connection() as conn:
                return await insert_usage(conn, batch)
        except _ROW_ERRORS:
            return await self._write_one_by_one(batch)

    async def _write_one_by_one(self, batch: list[UsageRecord]) -> int:
        # Rare: find the bad rows so the good ones are not held hostage by them.
        inserted = 0
        async with self._require_pool().connection() as conn:
            for rec in batch:
                try:
                    async with conn.transaction():
                        inserted += await insert_usage(conn, [rec])
                except _ROW_ERRORS as exc:
                    self.rejected += 1
                    log.error("usage row %s rejected by the database, dropped: %s", rec.request_id, exc)
        return inserted

    async def _run(self) -> None:
        delay = self._retry_initial
        while not self._stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._interval)
            self._wake.clear()
            if self._stop.is_set():
                break  # close() does the final flush, with its own deadline
            try:
                await self.flush()
                delay = self._retry_initial
            except (psycopg.Error, PoolTimeout) as exc:
                self.failed_flushes += 1
                log.warning(
                    "usage ledger flush failed (%d rows kept, retry in %.1fs): %s", len(self._buffer), delay, exc
                )
                # Sleep through the backoff unless close() takes over; not on _wake, which a full buffer keeps
                # set during an outage and would turn the backoff into a busy loop.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), delay)
                delay = min(delay * 2, self._retry_max)
