"""The durable queue in PostgreSQL (`jobs`, `job_events`), as the API uses it: create, read, list, and the
controls a user has (cancel, pause, resume). The worker's side (claims, leases, progress) is job_leases.py.

Every change to a row appends its events in the same transaction (`append_events`) and sends
`pg_notify('forge_jobs', id)`, so a watcher on any replica hears of it when it commits.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

from psycopg import AsyncConnection
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from ...domain import FailedPrecondition, NotFound
from ...domain.jobs import LIVE, TERMINAL, EventType, Failure, JobEvent, JobSnapshot, JobState, Lane

__all__ = ["JOBS_CHANNEL", "QUEUED_CHANNEL", "JobStore", "OwnerScope", "append_events", "snapshot_of"]

JOBS_CHANNEL: Final = "forge_jobs"
"""NOTIFY channel: payload is a row id whose events grew."""
QUEUED_CHANNEL: Final = "forge_jobs_queued"
"""NOTIFY channel: payload is a lane that has a new claimable row."""

Pool = AsyncConnectionPool[AsyncConnection[Any]]

COLUMNS: Final = (
    "id, queue, kind, state, owner, spec, priority, attempt, max_attempts, pause_requested, cancel_requested, "
    "message, progress, status, result, error, usage, last_event_seq, created_at, updated_at, started_at, "
    "finished_at"
)

_INSERT_EVENT: Final = """
INSERT INTO job_events (job_id, seq, type, state, message, progress, epoch, step, loss, eval_loss, artifact, data)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
"""


@dataclass(frozen=True, slots=True)
class OwnerScope:
    """Whose rows a query reaches: everyone's, or one owner's (None: rows created with auth off)."""

    everyone: bool = False
    owner: str | None = None


def snapshot_of(row: dict[str, Any]) -> JobSnapshot:
    return JobSnapshot(
        id=row["id"],
        lane=Lane(row["queue"]),
        kind=row["kind"],
        state=JobState(row["state"]),
        owner=row["owner"],
        spec=row["spec"] or {},
        priority=row["priority"],
        attempt=row["attempt"],
        max_attempts=row["max_attempts"],
        pause_requested=row["pause_requested"],
        cancel_requested=row["cancel_requested"],
        message=row["message"],
        progress=float(row["progress"]),
        status=row["status"] or {},
        result=row["result"],
        error=Failure.from_json(row["error"]) if row["error"] else None,
        usage=row["usage"],
        last_event_seq=row["last_event_seq"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        started_at=row["started_at"],
        finished_at=row["finished_at"],
    )


def _event_of(row: dict[str, Any]) -> JobEvent:
    return JobEvent(
        type=EventType(row["type"]),
        state=JobState(row["state"]),
        message=row["message"],
        progress=float(row["progress"]),
        epoch=row["epoch"],
        step=row["step"],
        loss=row["loss"],
        eval_loss=row["eval_loss"],
        artifact=row["artifact"],
        data=row["data"] or {},
        seq=row["seq"],
        job_id=row["job_id"],
        time=row["created_at"],
    )


async def append_events(conn: AsyncConnection[Any], job_id: str, events: Sequence[JobEvent]) -> int:
    """Appends `events` to a row's log inside the caller's transaction (which must hold the row, e.g. by having
    updated it) and notifies watchers at commit; returns the last sequence number."""
    cur = conn.cursor()
    await cur.execute(
        "UPDATE jobs SET last_event_seq = last_event_seq + %s WHERE id = %s RETURNING last_event_seq",
        [len(events), job_id],
    )
    found = await cur.fetchone()
    assert found is not None, job_id
    last = int(found[0])
    if events:
        first = last - len(events) + 1
        await cur.executemany(
            _INSERT_EVENT,
            [
                (job_id, first + i, e.type.value, e.state.value, e.message, e.progress, e.epoch, e.step, e.loss,
                 e.eval_loss, e.artifact, Jsonb(e.data))
                for i, e in enumerate(events)
            ],
        )  # fmt: skip
        await cur.execute("SELECT pg_notify(%s, %s)", [JOBS_CHANNEL, job_id])
    return last


class JobStore:
    def __init__(self) -> None:
        self._pool: Pool | None = None

    def bind(self, pool: Pool) -> None:
        self._pool = pool

    @property
    def pool(self) -> Pool:
        if self._pool is None:
            raise RuntimeError("JobStore used before the database pool was bound")
        return self._pool

    async def create(
        self,
        *,
        job_id: str,
        lane: Lane,
        kind: str,
        owner: str | None,
        principal: dict[str, Any],
        spec: dict[str, Any],
        priority: int,
        max_attempts: int,
        message: str,
        request_key: str | None = None,
    ) -> JobSnapshot:
        """Queues a row; with a `request_key` already used by this owner in this lane, returns that row instead."""
        async with self.pool.connection() as conn, conn.transaction():
            cur = conn.cursor(row_factory=dict_row)
            await cur.execute(
                f"""
                INSERT INTO jobs (id, queue, kind, owner, principal, spec, priority, max_attempts, message,
                                  request_key)
                VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
                ON CONFLICT (queue, coalesce(owner, ''), request_key) WHERE request_key IS NOT NULL DO NOTHING
                RETURNING {COLUMNS}
                """,
                [job_id, lane.value, kind, owner, Jsonb(principal), Jsonb(spec), priority, max_attempts, message,
                 request_key],
            )  # fmt: skip
            row = await cur.fetchone()
            if row is None:
                await cur.execute(
                    f"SELECT {COLUMNS} FROM jobs WHERE queue = %s AND owner IS NOT DISTINCT FROM %s "
                    "AND request_key = %s",
                    [lane.value, owner, request_key],
                )
                existing = await cur.fetchone()
                assert existing is not None
                return snapshot_of(existing)
            await append_events(conn, job_id, [JobEvent(EventType.STATE, JobState.QUEUED, message)])
            await cur.execute("SELECT pg_notify(%s, %s)", [QUEUED_CHANNEL, lane.value])
        found = await self.get(job_id)
        assert found is not None
        return found

    async def get(self, job_id: str) -> JobSnapshot | None:
        async with self.pool.connection() as conn:
            cur = conn.cursor(row_factory=dict_row)
            await cur.execute(f"SELECT {COLUMNS} FROM jobs WHERE id = %s", [job_id])
            row = await cur.fetchone()
        return snapshot_of(row) if row is not None else None

    async def page(
        self,
        lane: Lane,
        scope: OwnerScope,
        *,
        offset: int,
        limit: int,
        states: Sequence[JobState] = (),
        kind: str = "",
        project: str = "",
    ) -> tuple[list[JobSnapshot], int]:
        """A page, newest first, and how many rows match in all."""
        where = ["queue = %s"]
        args: list[Any] = [lane.value]
        if not scope.everyone:
            where.append("owner IS NOT DISTINCT FROM %s")
            args.append(scope.owner)
        if states:
            where.append("state = ANY(%s)")
            args.append([s.value for s in states])
        if kind:
            where.append("kind = %s")
            args.append(kind)
        if project:
            where.append("spec->>'project_name' = %s")
            args.append(project)
        clause = " AND ".join(where)
        async with self.pool.connection() as conn:
            cur = conn.cursor(row_factory=dict_row)
            await cur.execute(f"SELECT count(*) AS n FROM jobs WHERE {clause}", args)
            counted = await cur.fetchone()
            await cur.execute(
                f"SELECT {COLUMNS} FROM jobs WHERE {clause} ORDER BY created_at DESC, id DESC OFFSET %s LIMIT %s",
                [*args, offset, limit],
            )
            rows = await cur.fetchall()
        return [snapshot_of(r) for r in rows], int(counted["n"]) if counted else 0

    async def events(self, job_id: str, after_seq: int, limit: int, types: Sequence[EventType] = ()) -> list[JobEvent]:
        """Events with a larger sequence than `after_seq`, oldest first."""
        type_filter = "AND type = ANY(%s)" if types else ""
        args: list[Any] = [job_id, after_seq, *([[t.value for t in types]] if types else []), limit]
        async with self.pool.connection() as conn:
            cur = conn.cursor(row_factory=dict_row)
            await cur.execute(
                f"SELECT * FROM job_events WHERE job_id = %s AND seq > %s {type_filter} ORDER BY seq LIMIT %s",
                args,
            )
            return [_event_of(r) for r in await cur.fetchall()]

    async def attach_result(self, job_id: str, key: str, value: dict[str, Any], events: Sequence[JobEvent]) -> None:
        """Sets `result[key]` of a row (a validation, a deployment) and logs `events` with it."""
        async with self.pool.connection() as conn, conn.transaction():
            cur = await conn.execute(
                "UPDATE jobs SET result = coalesce(result, '{}') || jsonb_build_object(%s::text, %s::jsonb) "
                "WHERE id = %s RETURNING id",
                [key, Jsonb(value), job_id],
            )
            if await cur.fetchone() is None:
                raise NotFound("job", job_id)
            await append_events(conn, job_id, events)

    async def counts(self, lane: Lane) -> dict[str, int]:
        """Rows of a lane by state, as analytics' QueueCounts shows them: total, queued (paused included), running
        (every live state), completed, failed, cancelled."""
        async with self.pool.connection() as conn:
            cur = await conn.execute("SELECT state, count(*) FROM jobs WHERE queue = %s GROUP BY state", [lane.value])
            rows = await cur.fetchall()
        out = dict.fromkeys(("total", "queued", "running", "completed", "failed", "cancelled"), 0)
        for state, n in rows:
            key = {"paused": "queued"}.get(state, "running" if JobState(state) in LIVE else state)
            out[key] += int(n)
            out["total"] += int(n)
        return out

    async def queue_estimate(self, job: JobSnapshot) -> tuple[int, float | None]:
        """How many rows of its lane will run before `job` (queued ahead of it by priority, or running), and the
        mean duration of the lane's last 50 completed rows (None before the first)."""
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                """
                SELECT
                    (SELECT count(*) FROM jobs WHERE queue = %(lane)s AND id <> %(id)s AND (
                        lease_owner IS NOT NULL
                        OR state = 'queued' AND (priority, created_at) < (%(priority)s, %(created)s))),
                    (SELECT avg(extract(epoch FROM finished_at - started_at)) FROM (
                        SELECT finished_at, started_at FROM jobs
                        WHERE queue = %(lane)s AND state = 'completed' AND started_at IS NOT NULL
                        ORDER BY finished_at DESC LIMIT 50) recent)
                """,
                {"lane": job.lane.value, "id": job.id, "priority": job.priority, "created": job.created_at},
            )
            row = await cur.fetchone()
        assert row is not None
        return int(row[0]), float(row[1]) if row[1] is not None else None

    async def _locked(self, conn: AsyncConnection[Any], job_id: str) -> JobSnapshot:
        cur = conn.cursor(row_factory=dict_row)
        await cur.execute(f"SELECT {COLUMNS} FROM jobs WHERE id = %s FOR UPDATE", [job_id])
        row = await cur.fetchone()
        if row is None:
            raise NotFound("job", job_id)
        return snapshot_of(row)

    async def cancel(self, job_id: str, reason: str) -> JobSnapshot:
        """A queued or paused row is cancelled at once; a live one goes CANCELLING and its worker stops it."""
        note = f"cancelled: {reason}" if reason else "cancelled"
        async with self.pool.connection() as conn, conn.transaction():
            job = await self._locked(conn, job_id)
            if job.state in (JobState.CANCELLED, JobState.CANCELLING):
                return job
            if job.state in TERMINAL:
                raise FailedPrecondition(f"job {job_id!r} already finished ({job.state.value})", "JOB_FINISHED")
            if job.state in LIVE:
                await conn.execute(
                    "UPDATE jobs SET state = 'cancelling', cancel_requested = true, message = %s WHERE id = %s",
                    [f"cancelling: {reason}" if reason else "cancelling", job_id],
                )
                event = JobEvent(EventType.STATE, JobState.CANCELLING, reason or "cancel requested", job.progress)
            else:
                await conn.execute(
                    "UPDATE jobs SET state = 'cancelled', cancel_requested = true, pause_requested = false, "
                    "message = %s, finished_at = now() WHERE id = %s",
                    [note, job_id],
                )
                event = JobEvent(EventType.STATE, JobState.CANCELLED, note, job.progress)
            await append_events(conn, job_id, [event])
        return await self._get(job_id)

    async def pause(self, job_id: str, reason: str) -> JobSnapshot:
        """A queued row pauses at once; a live one at its next checkpoint (`pause_requested` until then)."""
        async with self.pool.connection() as conn, conn.transaction():
            job = await self._locked(conn, job_id)
            if job.state is JobState.PAUSED or (job.state in LIVE and job.pause_requested):
                return job
            if job.state in TERMINAL or job.state is JobState.CANCELLING:
                raise FailedPrecondition(f"job {job_id!r} cannot pause: it is {job.state.value}", "JOB_NOT_RUNNING")
            if job.state is JobState.QUEUED:
                await conn.execute(
                    "UPDATE jobs SET state = 'paused', pause_requested = false, message = 'paused' WHERE id = %s",
                    [job_id],
                )
                event = JobEvent(EventType.STATE, JobState.PAUSED, reason or "paused", job.progress)
            else:
                await conn.execute(
                    "UPDATE jobs SET pause_requested = true, message = 'pausing at the next checkpoint' WHERE id = %s",
                    [job_id],
                )
                event = JobEvent(EventType.STATE, job.state, reason or "pause requested", job.progress)
            await append_events(conn, job_id, [event])
        return await self._get(job_id)

    async def resume(self, job_id: str) -> JobSnapshot:
        """A paused row is queued again (it resumes from its latest checkpoint); a pending pause is withdrawn."""
        async with self.pool.connection() as conn, conn.transaction():
            job = await self._locked(conn, job_id)
            if job.state in LIVE and job.pause_requested:
                await conn.execute(
                    "UPDATE jobs SET pause_requested = false, message = 'pause withdrawn' WHERE id = %s", [job_id]
                )
                event = JobEvent(EventType.STATE, job.state, "pause withdrawn", job.progress)
            elif job.state is JobState.PAUSED:
                await conn.execute(
                    "UPDATE jobs SET state = 'queued', run_after = now(), message = 'resumed' WHERE id = %s",
                    [job_id],
                )
                event = JobEvent(EventType.STATE, JobState.QUEUED, "resumed", job.progress)
                await conn.execute("SELECT pg_notify(%s, %s)", [QUEUED_CHANNEL, job.lane.value])
            elif job.state is JobState.QUEUED or job.state in LIVE:
                return job
            else:
                raise FailedPrecondition(f"job {job_id!r} is {job.state.value}, not paused", "JOB_NOT_PAUSED")
            await append_events(conn, job_id, [event])
        return await self._get(job_id)

    async def _get(self, job_id: str) -> JobSnapshot:
        found = await self.get(job_id)
        if found is None:
            raise NotFound("job", job_id)
        return found
