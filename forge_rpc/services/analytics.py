"""AnalyticsService: proto ⇄ the usage ledger's writer and queries.

Implemented: RecordUsage, GetUserUsage, GetCurrentStats, GetStatsHistory, ListRequestLogs, ListModelStats,
GetDataSummary, ClearMetrics, ClearLogs, ClearAllData, GetMetrics, WatchMetrics (their snapshot is assembled in
metrics_snapshot.py). Not defined here, so the method
table answers UNIMPLEMENTED: the cache RPCs (the response cache arrives with issue 5), ListTaskHistory (the task
queue, issue 6) and GetSystemStats (host resources).

Isolation: a caller sees their own usage and logs; naming another user, seeing everyone's, and clearing data
are admin-only (the access table in the pipeline says so too; the checks here keep the servicer safe on its own).
With auth off the caller is the local operator, an admin.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

from forge.analytics.v1 import analytics_pb2 as pb
from google.protobuf.timestamp_pb2 import Timestamp

from ..adapters.host_stats import HostProbe
from ..adapters.store.analytics_queries import SORT_COLUMNS, AnalyticsQueries, LogEntry, LogFilter, ModelStatsRow
from ..adapters.store.job_counts import JobCounts
from ..adapters.store.ledger import UsageLedger
from ..domain import FieldViolation, InvalidArgument, PermissionDenied, PriceList
from ..domain.ledger import Operation, UsageRecord, UsageStatus
from .context import CallContext, principal
from .inflight import InFlight
from .metrics_snapshot import MetricsSnapshots
from .paging import next_page_token, page_offset
from .system_stats import ServiceStates
from .timestamps import timestamp

__all__ = ["AnalyticsConfig", "AnalyticsServicer"]

# The API's status words (seed 002) ⇄ the ledger's.
_STATUS_OUT = {UsageStatus.COMPLETED: "success", UsageStatus.FAILED: "error", UsageStatus.CANCELLED: "cancelled"}
_STATUS_IN = {**{v: k for k, v in _STATUS_OUT.items()}, **{s.value: s for s in UsageStatus}}
_REQUEST_TYPE = {Operation.CHAT: "chat_completion", Operation.EMBEDDING: "embedding", Operation.RAG: "rag_query"}


@dataclass(frozen=True, slots=True)
class AnalyticsConfig:
    default_token_quota: int | None = None
    """Tokens per user per calendar month (UTC); None means no quota (answered as -1)."""
    token_quotas: Mapping[str, int] = field(default_factory=dict)
    """Per-user overrides of `default_token_quota`."""
    watch_interval_s: float = 1.0
    """Default spacing of WatchMetrics snapshots when the request names none."""


def _ts(value: datetime | float | None) -> Timestamp | None:
    return None if value is None else timestamp(value)


def _parse_when(text: str, name: str, *, end: bool) -> datetime:
    """ISO 8601 date or date-time; a bare end date includes its whole day."""
    try:
        if len(text) == 10:
            day = date.fromisoformat(text)
            start = datetime(day.year, day.month, day.day, tzinfo=UTC)
            return start + timedelta(days=1) - timedelta(microseconds=1) if end else start
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidArgument([FieldViolation(name, f"{text!r} is not an ISO 8601 date or date-time")]) from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _month_start(now: datetime) -> datetime:
    return datetime(now.year, now.month, 1, tzinfo=UTC)


def _next_month(now: datetime) -> datetime:
    return datetime(now.year + now.month // 12, now.month % 12 + 1, 1, tzinfo=UTC)


def _page(page_size: int, limit: int, offset: int, token: str, default: int, maximum: int) -> tuple[int, int]:
    """(limit, offset) from the paging fields; `page_token` wins over the seed's `offset`."""
    violations = [
        FieldViolation(n, "must not be negative")
        for n, v in (("page_size", page_size), ("limit", limit), ("offset", offset))
        if v < 0
    ]
    if violations:
        raise InvalidArgument(violations)
    size = min(page_size or limit or default, maximum)
    return size, page_offset(token) if token else offset


def _caller(context: CallContext) -> str | None:
    """The authenticated user; None for the local operator (auth off)."""
    return principal.get().user_id


def _require_admin(context: CallContext) -> None:
    if not principal.get().is_admin:
        raise PermissionDenied("this needs the admin role", "ADMIN_ONLY")


def _scope(context: CallContext, user_id: str) -> str | None:
    """Whose rows a query reads: an admin's choice (everyone when empty), else always the caller's own."""
    who = principal.get()
    if who.is_admin:
        return user_id or None
    if user_id and user_id != who.user_id:
        raise PermissionDenied("only admins may read another user's usage", "NOT_OWNER")
    return who.user_id or ""


class AnalyticsServicer:
    def __init__(
        self,
        ledger: UsageLedger,
        queries: AnalyticsQueries,
        prices: PriceList,
        started_at: float,
        config: AnalyticsConfig | None = None,
        *,
        inflight: InFlight | None = None,
        services: ServiceStates | None = None,
        host: HostProbe | None = None,
        queue: JobCounts | None = None,
    ) -> None:
        self._ledger = ledger
        self._queries = queries
        self._prices = prices
        self._started_at = started_at
        self._config = config or AnalyticsConfig()
        self._inflight = inflight or InFlight()
        self._metrics = MetricsSnapshots(queries, started_at, self._inflight, host or HostProbe(), services, queue)

    def _quota(self, user_id: str | None) -> int | None:
        if user_id is None:
            return None
        return self._config.token_quotas.get(user_id, self._config.default_token_quota)

    async def _quota_remaining(self, user_id: str | None, now: datetime) -> tuple[int, int]:
        limit = self._quota(user_id)
        if limit is None or user_id is None:
            return -1, -1
        used = await self._queries.tokens_used(user_id, _month_start(now), _next_month(now))
        return max(limit - used, 0), limit

    async def RecordUsage(self, request: pb.RecordUsageRequest, context: CallContext) -> pb.RecordUsageResponse:
        violations = []
        if not request.model:
            violations.append(FieldViolation("model", "required"))
        for name in ("tokens_used", "prompt_tokens", "completion_tokens", "latency_ms"):
            if getattr(request, name) < 0:
                violations.append(FieldViolation(name, "must not be negative"))
        if request.HasField("cost_usd") and request.cost_usd < 0:
            violations.append(FieldViolation("cost_usd", "must not be negative"))
        if violations:
            raise InvalidArgument(violations)
        if request.user_id and request.user_id != _caller(context):
            _require_admin(context)
        user = request.user_id or _caller(context)
        prompt, completion = request.prompt_tokens, request.completion_tokens
        if not prompt and not completion:
            # Only a total: the split is unknown, and the ledger's total is prompt + completion.
            prompt = request.tokens_used
        cost = (
            request.cost_usd if request.HasField("cost_usd") else self._prices.cost(request.model, prompt, completion)
        )
        kind = request.request_type.lower()
        operation = Operation.EMBEDDING if "embed" in kind else Operation.RAG if "rag" in kind else Operation.CHAT
        rid = request.request_id or uuid.uuid4().hex
        created = request.timestamp.ToDatetime(UTC) if request.HasField("timestamp") else datetime.now(UTC)
        rec = UsageRecord(
            request_id=rid,
            model=request.model,
            status=UsageStatus.COMPLETED,
            operation=operation,
            user_id=user,
            provider=request.provider or "external",
            prompt_tokens=prompt,
            completion_tokens=completion,
            cost_usd=cost,
            latency_ms=request.latency_ms or None,
            created_at=created.timestamp(),
        )
        # Written at once, not batched: `recorded: true` promises the row is durable, and the quota answer
        # below must include it. A repeated request id is acknowledged but not counted twice.
        await self._ledger.write_now(rec)
        now = datetime.now(UTC)
        remaining, limit = await self._quota_remaining(user, now)
        return pb.RecordUsageResponse(
            recorded=True,
            usage_id=rid,
            quota_remaining=remaining,
            quota_limit=limit,
            quota_resets_at=_ts(_next_month(now)),
            cost_usd=cost,
        )

    async def GetUserUsage(self, request: pb.GetUserUsageRequest, context: CallContext) -> pb.UserUsage:
        user = request.user_id
        if user == "me":
            user = _caller(context) or ""
            if not user:
                raise InvalidArgument([FieldViolation("user_id", "'me' needs an authenticated caller")])
        if not user:
            raise InvalidArgument([FieldViolation("user_id", "required")])
        if user != _caller(context):
            _require_admin(context)
        now = datetime.now(UTC)
        start = _parse_when(request.start_date, "start_date", end=False) if request.start_date else _month_start(now)
        end = _parse_when(request.end_date, "end_date", end=True) if request.end_date else now
        if end < start:
            raise InvalidArgument([FieldViolation("end_date", "is before start_date")])
        data = await self._queries.user_usage(user, start, end, request.model or None)
        remaining, _ = await self._quota_remaining(user, now)
        return pb.UserUsage(
            user_id=user,
            period=pb.Period(start=_ts(start), end=_ts(end)),
            total_tokens=data.tokens,
            total_requests=data.requests,
            total_cost_usd=data.cost_usd,
            quota_remaining=remaining,
            model_breakdown={
                name: pb.ModelUsage(
                    tokens=m.tokens,
                    requests=m.requests,
                    cost_estimate=m.cost_usd,
                    prompt_tokens=m.prompt_tokens,
                    completion_tokens=m.completion_tokens,
                )
                for name, m in data.by_model.items()
            },
        )

    async def GetCurrentStats(self, request: pb.GetCurrentStatsRequest, context: CallContext) -> pb.CurrentStats:
        t = await self._queries.totals(_scope(context, request.user_id))
        return pb.CurrentStats(
            total_requests=t.requests,
            total_tokens=t.tokens,
            total_errors=t.errors,
            avg_latency_ms=t.avg_latency_ms,
            models_in_use=t.models_in_use,
            uptime_seconds=time.time() - self._started_at,
            timestamp=_ts(time.time()),
            total_cost_usd=t.cost_usd,
            active_requests=self._inflight.requests - 1,  # not counting this call
        )

    async def GetStatsHistory(
        self, request: pb.GetStatsHistoryRequest, context: CallContext
    ) -> pb.GetStatsHistoryResponse:
        hours = request.hours or 24
        violations = []
        if not 1 <= hours <= 720:
            violations.append(FieldViolation("hours", "must be between 1 and 720"))
        bucket = request.bucket_sec or (3600 if hours > 6 else 300)
        if bucket < 10 or hours * 3600 / bucket > 10_000:
            violations.append(FieldViolation("bucket_sec", "must be at least 10 and give at most 10,000 buckets"))
        if violations:
            raise InvalidArgument(violations)
        buckets = await self._queries.history(hours, bucket, request.model or None, _scope(context, request.user_id))
        return pb.GetStatsHistoryResponse(
            bucket_sec=bucket,
            metrics=[
                pb.MetricsBucket(
                    timestamp=_ts(b.start),
                    requests_per_minute=b.requests * 60 / bucket,
                    tokens_per_second=b.completion_tokens / bucket,
                    avg_latency_ms=b.avg_latency_ms,
                    error_rate=b.errors / b.requests if b.requests else 0.0,
                    requests=b.requests,
                    tokens=b.tokens,
                    p95_latency_ms=b.p95_latency_ms,
                    cost_usd=b.cost_usd,
                )
                for b in buckets
            ],
        )

    async def ListRequestLogs(
        self, request: pb.ListRequestLogsRequest, context: CallContext
    ) -> pb.ListRequestLogsResponse:
        limit, offset = _page(request.page_size, request.limit, request.offset, request.page_token, 100, 1000)
        sort = request.sort or "-timestamp"
        violations = []
        if sort.lstrip("-") not in SORT_COLUMNS:
            violations.append(FieldViolation("sort", f"one of {', '.join(SORT_COLUMNS)}, '-' prefixed for descending"))
        status = _STATUS_IN.get(request.status) if request.status else None
        if request.status and status is None:
            violations.append(FieldViolation("status", "one of success, error, cancelled"))
        if violations:
            raise InvalidArgument(violations)
        f = LogFilter(
            model=request.model or None,
            status=status,
            user_id=_scope(context, request.user_id),
            start=request.start_time.ToDatetime(UTC) if request.HasField("start_time") else None,
            end=request.end_time.ToDatetime(UTC) if request.HasField("end_time") else None,
        )
        entries, total = await self._queries.logs(f, sort, limit, offset)
        return pb.ListRequestLogsResponse(
            logs=[_log_message(e) for e in entries],
            total=total,
            next_page_token=next_page_token(offset, len(entries), total),
        )

    async def ListModelStats(
        self, request: pb.ListModelStatsRequest, context: CallContext
    ) -> pb.ListModelStatsResponse:
        limit, offset = _page(request.page_size, 0, 0, request.page_token, 100, 1000)
        if request.hours < 0:
            raise InvalidArgument([FieldViolation("hours", "must not be negative")])
        who = _scope(context, request.user_id)
        rows, total = await self._queries.model_stats(request.hours, who, limit, offset)
        return pb.ListModelStatsResponse(
            models=[_model_message(r) for r in rows], next_page_token=next_page_token(offset, len(rows), total)
        )

    async def GetDataSummary(self, request: pb.GetDataSummaryRequest, context: CallContext) -> pb.DataSummary:
        s = await self._queries.summary()
        return pb.DataSummary(
            total_requests=s.requests,
            total_logs_entries=s.requests,  # every ledger row is a log entry
            metric_points=0,  # history is computed from the ledger; no separate points are stored
            oldest_timestamp=_ts(s.oldest),
            newest_timestamp=_ts(s.newest),
            database_size_mb=s.database_size_mb,
        )

    async def ClearMetrics(self, request: pb.ClearMetricsRequest, context: CallContext) -> pb.ClearDataResponse:
        _require_admin(context)
        # Nothing to delete: history buckets are computed from the ledger rows, which ClearLogs removes.
        return pb.ClearDataResponse(success=True, message="No metric points are stored separately; nothing cleared")

    async def ClearLogs(self, request: pb.ClearLogsRequest, context: CallContext) -> pb.ClearDataResponse:
        _require_admin(context)
        before = request.before.ToDatetime(UTC) if request.HasField("before") else None
        n = await self._queries.clear_logs(before)
        return pb.ClearDataResponse(success=True, message=f"{n} log entries cleared", rows_deleted=n, logs_deleted=n)

    async def ClearAllData(self, request: pb.ClearAllDataRequest, context: CallContext) -> pb.ClearDataResponse:
        _require_admin(context)
        before = request.before.ToDatetime(UTC) if request.HasField("before") else None
        n = await self._queries.clear_logs(before)
        return pb.ClearDataResponse(
            success=True, message=f"All data cleared ({n} rows)", rows_deleted=n, logs_deleted=n
        )

    async def GetMetrics(self, request: pb.GetMetricsRequest, context: CallContext) -> pb.MetricsSnapshot:
        return await self._metrics.snapshot()

    async def WatchMetrics(
        self, request: pb.WatchMetricsRequest, context: CallContext
    ) -> AsyncIterator[pb.MetricsSnapshot]:
        interval = max(request.interval_ms, 250) / 1000 if request.interval_ms else self._config.watch_interval_s
        while True:
            started = time.monotonic()
            yield await self._metrics.snapshot()
            # Paced from the start of each snapshot, so a slow query does not stretch the interval.
            await asyncio.sleep(max(0.0, interval - (time.monotonic() - started)))


def _log_message(e: LogEntry) -> pb.RequestLog:
    return pb.RequestLog(
        id=e.request_id,
        timestamp=_ts(e.created_at),
        model=e.model,
        prompt=e.prompt_text or "",
        response=e.response_text or "",
        tokens_used=e.prompt_tokens + e.completion_tokens,
        latency_ms=e.latency_ms or 0,
        status=_STATUS_OUT[e.status],
        client_ip=e.client_ip or "",
        provider=e.provider or "",
        prompt_tokens=e.prompt_tokens,
        completion_tokens=e.completion_tokens,
        cost_usd=e.cost_usd,
        ttft_ms=e.ttft_ms or 0,
        user_id=e.user_id or "",
        api_key_id=e.api_key_id or "",
        request_type="external" if e.provider == "external" else _REQUEST_TYPE.get(Operation(e.operation), e.operation),
        error_reason=e.error_reason or "",
    )


def _model_message(r: ModelStatsRow) -> pb.ModelStats:
    return pb.ModelStats(
        name=r.model,
        total_requests=r.requests,
        total_tokens=r.tokens,
        avg_latency_ms=r.avg_latency_ms,
        tokens_per_second=r.tokens_per_second,
        error_rate=r.error_rate,
        last_used=_ts(r.last_used),
        provider=r.provider or "",
        total_cost_usd=r.cost_usd,
        avg_ttft_ms=r.avg_ttft_ms,
    )
