"""Read side of the usage ledger: per-user usage, totals, time-bucketed history, request logs, per-model stats.

Everything is computed from `usage_ledger` on demand (its `created_at`, `(user_id, created_at)` and
`(model, created_at)` indexes serve the windows): there is no second table of pre-aggregated metric points to
keep in step. Results are plain dataclasses; the servicer turns them into protos.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, LiteralString

from psycopg import AsyncConnection, sql
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from ...domain import FailedPrecondition
from ...domain.ledger import UsageStatus

__all__ = [
    "AnalyticsQueries",
    "Bucket",
    "LogEntry",
    "LogFilter",
    "ModelStatsRow",
    "ModelUsageRow",
    "Summary",
    "Totals",
    "Traffic",
    "UserUsageData",
]

Pool = AsyncConnectionPool[AsyncConnection[Any]]

# Sort keys a caller may name → column; request_id breaks ties so offset pages never overlap.
SORT_COLUMNS = {
    "timestamp": "created_at",
    "latency_ms": "latency_ms",
    "tokens_used": "total_tokens",
    "cost_usd": "cost_usd",
}


@dataclass(frozen=True, slots=True)
class ModelUsageRow:
    requests: int
    tokens: int
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float


@dataclass(frozen=True, slots=True)
class UserUsageData:
    requests: int
    tokens: int
    cost_usd: float
    by_model: dict[str, ModelUsageRow]


@dataclass(frozen=True, slots=True)
class Totals:
    requests: int
    tokens: int
    errors: int
    avg_latency_ms: float
    cost_usd: float
    models_in_use: list[str]
    """Models with a request in the last hour."""


@dataclass(frozen=True, slots=True)
class Bucket:
    start: datetime
    requests: int
    tokens: int
    completion_tokens: int
    errors: int
    avg_latency_ms: float
    p95_latency_ms: float
    cost_usd: float


@dataclass(frozen=True, slots=True)
class LogFilter:
    model: str | None = None
    status: UsageStatus | None = None
    user_id: str | None = None
    start: datetime | None = None
    end: datetime | None = None


@dataclass(frozen=True, slots=True)
class LogEntry:
    request_id: str
    created_at: datetime
    operation: str
    user_id: str | None
    api_key_id: str | None
    model: str
    provider: str | None
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float
    latency_ms: int | None
    ttft_ms: int | None
    status: UsageStatus
    error_reason: str | None
    client_ip: str | None
    prompt_text: str | None
    response_text: str | None


@dataclass(frozen=True, slots=True)
class ModelStatsRow:
    model: str
    requests: int
    tokens: int
    avg_latency_ms: float
    avg_ttft_ms: float
    tokens_per_second: float
    error_rate: float
    last_used: datetime
    provider: str | None
    cost_usd: float


@dataclass(frozen=True, slots=True)
class Summary:
    requests: int
    oldest: datetime | None
    newest: datetime | None
    database_size_mb: float


@dataclass(frozen=True, slots=True)
class Traffic:
    requests: int
    completion_tokens: int
    avg_latency_ms: float
    p95_latency_ms: float
    error_rate: float
    window_s: float


def _f(value: Any) -> float:
    return float(value) if value is not None else 0.0


def _i(value: Any) -> int:
    return int(value) if value is not None else 0


class AnalyticsQueries:
    """Queries over the ledger. `now` is injectable so tests pin the history buckets exactly."""

    def __init__(self, pool: Pool | None = None, now: Callable[[], float] = time.time) -> None:
        self._bound = pool
        self._now = now

    def bind(self, pool: Pool) -> None:
        """Sets the pool when it did not exist at construction (storage starts after the servicers are built)."""
        self._bound = pool

    @property
    def _pool(self) -> Pool:
        if self._bound is None:
            raise FailedPrecondition("analytics storage is not started yet", "STORAGE_NOT_READY")
        return self._bound

    async def _rows(self, query: sql.Composable | str, params: Sequence[Any] | dict[str, Any]) -> list[dict[str, Any]]:
        async with self._pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(query, params)  # type: ignore[arg-type]  # composed SQL is fine at run time
            return await cur.fetchall()

    async def _execute(self, query: LiteralString, params: Sequence[Any]) -> int:
        async with self._pool.connection() as conn:
            cur = await conn.execute(query, params)
            return max(cur.rowcount, 0)

    async def user_usage(self, user_id: str, start: datetime, end: datetime, model: str | None) -> UserUsageData:
        rows = await self._rows(
            """
            SELECT model, count(*) AS requests, sum(total_tokens) AS tokens, sum(prompt_tokens) AS prompt,
                   sum(completion_tokens) AS completion, sum(cost_usd) AS cost
            FROM usage_ledger
            WHERE user_id = %(user)s AND created_at >= %(start)s AND created_at <= %(end)s
              AND (%(model)s::text IS NULL OR model = %(model)s)
            GROUP BY model ORDER BY model
            """,
            {"user": user_id, "start": start, "end": end, "model": model},
        )
        by_model = {
            r["model"]: ModelUsageRow(
                _i(r["requests"]), _i(r["tokens"]), _i(r["prompt"]), _i(r["completion"]), _f(r["cost"])
            )
            for r in rows
        }
        return UserUsageData(
            sum(m.requests for m in by_model.values()),
            sum(m.tokens for m in by_model.values()),
            sum(m.cost_usd for m in by_model.values()),
            by_model,
        )

    async def tokens_used(self, user_id: str, start: datetime, end: datetime) -> int:
        """Tokens of `user_id` in [start, end): a quota period."""
        rows = await self._rows(
            "SELECT coalesce(sum(total_tokens), 0) AS t FROM usage_ledger"
            " WHERE user_id = %s AND created_at >= %s AND created_at < %s",
            [user_id, start, end],
        )
        return _i(rows[0]["t"])

    async def totals(self, user_id: str | None = None) -> Totals:
        hour_ago = datetime.fromtimestamp(self._now() - 3600, UTC)
        rows = await self._rows(
            """
            SELECT count(*) AS requests, sum(total_tokens) AS tokens,
                   count(*) FILTER (WHERE status = 'failed') AS errors, avg(latency_ms) AS latency,
                   sum(cost_usd) AS cost,
                   array_agg(DISTINCT model ORDER BY model) FILTER (WHERE created_at >= %(hour_ago)s) AS models
            FROM usage_ledger WHERE (%(user)s::text IS NULL OR user_id = %(user)s)
            """,
            {"user": user_id, "hour_ago": hour_ago},
        )
        r = rows[0]
        return Totals(
            _i(r["requests"]),
            _i(r["tokens"]),
            _i(r["errors"]),
            _f(r["latency"]),
            _f(r["cost"]),
            list(r["models"] or []),
        )

    async def history(
        self, hours: int, bucket_s: int, model: str | None = None, user_id: str | None = None
    ) -> list[Bucket]:
        """Buckets of `bucket_s` covering the last `hours`, oldest first, aligned to multiples of `bucket_s`
        since the epoch; the last one holds now. Empty buckets are included with zeros."""
        count = max(1, math.ceil(hours * 3600 / bucket_s))
        last_start = math.floor(self._now() / bucket_s) * bucket_s
        first = datetime.fromtimestamp(last_start - (count - 1) * bucket_s, UTC)
        end = datetime.fromtimestamp(last_start + bucket_s, UTC)
        rows = await self._rows(
            """
            WITH agg AS (
                SELECT floor(extract(epoch FROM created_at - %(first)s) / %(w)s)::int AS i,
                       count(*) AS requests, sum(total_tokens) AS tokens, sum(completion_tokens) AS completion,
                       count(*) FILTER (WHERE status = 'failed') AS errors, avg(latency_ms) AS latency,
                       percentile_cont(0.95) WITHIN GROUP (ORDER BY latency_ms) AS p95, sum(cost_usd) AS cost
                FROM usage_ledger
                WHERE created_at >= %(first)s AND created_at < %(end)s
                  AND (%(model)s::text IS NULL OR model = %(model)s)
                  AND (%(user)s::text IS NULL OR user_id = %(user)s)
                GROUP BY 1
            )
            SELECT s.i, agg.requests, agg.tokens, agg.completion, agg.errors, agg.latency, agg.p95, agg.cost
            FROM generate_series(0, %(n)s - 1) AS s(i) LEFT JOIN agg ON agg.i = s.i
            ORDER BY s.i
            """,
            {"first": first, "end": end, "w": bucket_s, "n": count, "model": model, "user": user_id},
        )
        t0 = last_start - (count - 1) * bucket_s
        return [
            Bucket(
                datetime.fromtimestamp(t0 + r["i"] * bucket_s, UTC),
                _i(r["requests"]),
                _i(r["tokens"]),
                _i(r["completion"]),
                _i(r["errors"]),
                _f(r["latency"]),
                _f(r["p95"]),
                _f(r["cost"]),
            )
            for r in rows
        ]

    def _where(self, f: LogFilter) -> tuple[sql.Composable, dict[str, Any]]:
        parts: list[sql.Composable] = [sql.SQL("TRUE")]
        params: dict[str, Any] = {}
        for key, column, value in (
            ("model", "model", f.model),
            ("status", "status", f.status.value if f.status else None),
            ("user", "user_id", f.user_id),
        ):
            if value is not None:
                parts.append(sql.SQL("{} = {}").format(sql.Identifier(column), sql.Placeholder(key)))
                params[key] = value
        if f.start is not None:
            parts.append(sql.SQL("created_at >= %(start)s"))
            params["start"] = f.start
        if f.end is not None:
            parts.append(sql.SQL("created_at < %(end)s"))
            params["end"] = f.end
        return sql.SQL(" AND ").join(parts), params

    async def logs(self, f: LogFilter, sort: str, limit: int, offset: int) -> tuple[list[LogEntry], int]:
        """A page of ledger rows and the count matching `f`. `sort` is a key of SORT_COLUMNS, `-` prefixed for
        descending (the caller validated it)."""
        descending = sort.startswith("-")
        column = SORT_COLUMNS[sort.lstrip("-")]
        direction = sql.SQL("DESC NULLS LAST" if descending else "ASC NULLS FIRST")
        where, params = self._where(f)
        page = await self._rows(
            sql.SQL(
                """
                SELECT request_id, created_at, operation, user_id, api_key_id, model, provider, prompt_tokens,
                       completion_tokens, cost_usd, latency_ms, ttft_ms, status, error_reason,
                       host(client_ip) AS client_ip, prompt_text, response_text
                FROM usage_ledger WHERE {where}
                ORDER BY {column} {direction}, request_id {direction}
                LIMIT %(limit)s OFFSET %(offset)s
                """
            ).format(where=where, column=sql.Identifier(column), direction=direction),
            {**params, "limit": limit, "offset": offset},
        )
        total = await self._rows(sql.SQL("SELECT count(*) AS n FROM usage_ledger WHERE {}").format(where), params)
        entries = [LogEntry(**{**r, "cost_usd": _f(r["cost_usd"]), "status": UsageStatus(r["status"])}) for r in page]
        return entries, _i(total[0]["n"])

    async def model_stats(
        self, hours: int, user_id: str | None, limit: int, offset: int
    ) -> tuple[list[ModelStatsRow], int]:
        """Per-model statistics, most requested first; `hours` 0 means all time."""
        since = datetime.fromtimestamp(self._now() - hours * 3600, UTC) if hours > 0 else None
        rows = await self._rows(
            """
            SELECT model, count(*) AS requests, sum(total_tokens) AS tokens, avg(latency_ms) AS latency,
                   avg(ttft_ms) AS ttft,
                   -- generation speed: completion tokens over the time after the first token, for rows
                   -- that streamed (have a TTFT and took longer than it)
                   sum(completion_tokens) FILTER (WHERE ttft_ms IS NOT NULL AND latency_ms > ttft_ms)
                     * 1000.0 / nullif(sum(latency_ms - ttft_ms)
                       FILTER (WHERE ttft_ms IS NOT NULL AND latency_ms > ttft_ms), 0) AS tps,
                   count(*) FILTER (WHERE status = 'failed')::float8 / count(*) AS error_rate,
                   max(created_at) AS last_used,
                   (array_agg(provider ORDER BY created_at DESC) FILTER (WHERE provider IS NOT NULL))[1]
                     AS provider,
                   sum(cost_usd) AS cost, count(*) OVER () AS total
            FROM usage_ledger
            WHERE (%(since)s::timestamptz IS NULL OR created_at >= %(since)s)
              AND (%(user)s::text IS NULL OR user_id = %(user)s)
            GROUP BY model
            ORDER BY requests DESC, model
            LIMIT %(limit)s OFFSET %(offset)s
            """,
            {"since": since, "user": user_id, "limit": limit, "offset": offset},
        )
        total = _i(rows[0]["total"]) if rows else 0
        if not rows and offset > 0:  # past the end: the window function saw no rows, count separately
            count = await self._rows(
                """
                SELECT count(DISTINCT model) AS n FROM usage_ledger
                WHERE (%(since)s::timestamptz IS NULL OR created_at >= %(since)s)
                  AND (%(user)s::text IS NULL OR user_id = %(user)s)
                """,
                {"since": since, "user": user_id},
            )
            total = _i(count[0]["n"])
        stats = [
            ModelStatsRow(
                r["model"],
                _i(r["requests"]),
                _i(r["tokens"]),
                _f(r["latency"]),
                _f(r["ttft"]),
                _f(r["tps"]),
                _f(r["error_rate"]),
                r["last_used"],
                r["provider"],
                _f(r["cost"]),
            )
            for r in rows
        ]
        return stats, total

    async def traffic(self, window_s: float = 60.0) -> Traffic:
        since = datetime.fromtimestamp(self._now() - window_s, UTC)
        rows = await self._rows(
            """
            SELECT count(*) AS requests, sum(completion_tokens) AS completion, avg(latency_ms) AS latency,
                   percentile_cont(0.95) WITHIN GROUP (ORDER BY latency_ms) AS p95,
                   count(*) FILTER (WHERE status = 'failed') AS errors
            FROM usage_ledger WHERE created_at >= %s
            """,
            [since],
        )
        r = rows[0]
        n = _i(r["requests"])
        return Traffic(
            n, _i(r["completion"]), _f(r["latency"]), _f(r["p95"]), _i(r["errors"]) / n if n else 0.0, window_s
        )

    async def summary(self) -> Summary:
        rows = await self._rows(
            """
            SELECT count(*) AS n, min(created_at) AS oldest, max(created_at) AS newest,
                   pg_database_size(current_database()) / 1048576.0 AS mb
            FROM usage_ledger
            """,
            [],
        )
        r = rows[0]
        return Summary(_i(r["n"]), r["oldest"], r["newest"], _f(r["mb"]))

    async def clear_logs(self, before: datetime | None) -> int:
        """Deletes ledger rows (with their text) created before `before`, or all; returns the count."""
        if before is None:
            return await self._execute("DELETE FROM usage_ledger", [])
        return await self._execute("DELETE FROM usage_ledger WHERE created_at < %s", [before])
