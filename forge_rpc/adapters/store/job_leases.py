"""The worker's side of the durable queue: claim a row with `FOR UPDATE SKIP LOCKED`, hold it by a lease renewed
by heartbeat, report progress, finish — every write fenced by (lease_owner, attempt), so a worker that lost its
lease (a pause in the world long enough for another replica to take over) can no longer change the row — and
reap rows whose worker died: requeued, or failed once `max_attempts` claims were lost.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from ...domain.jobs import TERMINAL, EventType, Failure, JobEvent, JobSnapshot, JobState, Lane
from .job_store import QUEUED_CHANNEL, JobStore, append_events, snapshot_of

__all__ = ["Claim", "Controls", "JobLeases", "LeaseLost"]

log = logging.getLogger("forge.jobs")

_CLAIM: Final = """
WITH next AS (
    SELECT id FROM jobs
    WHERE queue = %(lane)s AND state = 'queued' AND run_after <= now()
    ORDER BY priority, created_at, id
    FOR UPDATE SKIP LOCKED
    LIMIT 1
)
UPDATE jobs j SET
    state = %(state)s, lease_owner = %(me)s, lease_expires_at = now() + %(lease)s * interval '1 second',
    attempt = j.attempt + 1, started_at = coalesce(j.started_at, now()), message = %(message)s, runner_ref = NULL
FROM next WHERE j.id = next.id
RETURNING j.*
"""

_FENCE: Final = "id = %(id)s AND lease_owner = %(me)s AND attempt = %(attempt)s"


class LeaseLost(Exception):
    """This worker no longer holds the row: stop working on it and write nothing more."""


@dataclass(frozen=True, slots=True)
class Claim:
    job: JobSnapshot
    attempt: int
    principal: dict[str, Any]
    """What the creator's credential allowed, as stored at creation."""

    @property
    def id(self) -> str:
        return self.job.id

    @property
    def resume_from(self) -> str:
        """The latest checkpoint an earlier attempt (or a pause) left; '' for a fresh start."""
        return str((self.job.status.get("artifacts") or {}).get("checkpoint_path", ""))


@dataclass(frozen=True, slots=True)
class Controls:
    """What users asked of a running row since the last heartbeat."""

    cancel: bool
    pause: bool


class JobLeases:
    def __init__(self, store: JobStore, worker_id: str, lease_s: float, max_backoff_s: float = 60.0) -> None:
        self._store = store
        self.worker_id = worker_id
        self.lease_s = lease_s
        self._max_backoff_s = max_backoff_s

    def _fence(self, claim: Claim) -> dict[str, Any]:
        return {"id": claim.id, "me": self.worker_id, "attempt": claim.attempt}

    async def claim(self, lane: Lane) -> Claim | None:
        """The most urgent claimable row of `lane`, now leased to this worker; None when there is none."""
        working = JobState.PREPARING if lane is Lane.TRAINING else JobState.RUNNING
        async with self._store.pool.connection() as conn, conn.transaction():
            cur = conn.cursor(row_factory=dict_row)
            await cur.execute(
                _CLAIM,
                {
                    "lane": lane.value,
                    "state": working.value,
                    "me": self.worker_id,
                    "lease": self.lease_s,
                    "message": "preparing" if lane is Lane.TRAINING else "running",
                },
            )
            row = await cur.fetchone()
            if row is None:
                return None
            job = snapshot_of(row)
            await append_events(
                conn,
                job.id,
                [
                    JobEvent(EventType.ATTEMPT, working, f"attempt {job.attempt} by {self.worker_id}", job.progress),
                    JobEvent(EventType.STATE, working, working.value, job.progress),
                ],
            )
        return Claim(job, job.attempt, row["principal"] or {})

    async def heartbeat(self, claim: Claim) -> Controls:
        """Renews the lease; raises LeaseLost when the row is no longer this worker's."""
        async with self._store.pool.connection() as conn:
            cur = await conn.execute(
                f"UPDATE jobs SET lease_expires_at = now() + %(lease)s * interval '1 second' WHERE {_FENCE} "
                "RETURNING cancel_requested, pause_requested",
                {**self._fence(claim), "lease": self.lease_s},
            )
            row = await cur.fetchone()
        if row is None:
            raise LeaseLost(claim.id)
        return Controls(cancel=bool(row[0]), pause=bool(row[1]))

    async def record(
        self,
        claim: Claim,
        events: Sequence[JobEvent],
        *,
        state: JobState | None = None,
        progress: float | None = None,
        message: str | None = None,
        status: dict[str, Any] | None = None,
        runner_ref: dict[str, Any] | None = None,
    ) -> None:
        """Progress of a live row (a user's CANCELLING is never overwritten); raises LeaseLost."""
        async with self._store.pool.connection() as conn, conn.transaction():
            cur = await conn.execute(
                f"""
                UPDATE jobs SET
                    state = CASE WHEN state = 'cancelling' THEN state ELSE coalesce(%(state)s, state) END,
                    progress = coalesce(%(progress)s, progress),
                    message = coalesce(%(message)s, message),
                    status = coalesce(%(status)s, status),
                    runner_ref = coalesce(%(ref)s, runner_ref)
                WHERE {_FENCE}
                RETURNING id
                """,
                {
                    **self._fence(claim),
                    "state": state.value if state is not None else None,
                    "progress": progress,
                    "message": message,
                    "status": Jsonb(status) if status is not None else None,
                    "ref": Jsonb(runner_ref) if runner_ref is not None else None,
                },
            )
            if await cur.fetchone() is None:
                raise LeaseLost(claim.id)
            await append_events(conn, claim.id, events)

    async def finish(
        self,
        claim: Claim,
        state: JobState,
        events: Sequence[JobEvent],
        *,
        message: str,
        progress: float | None = None,
        status: dict[str, Any] | None = None,
        error: Failure | None = None,
        result: dict[str, Any] | None = None,
        usage: dict[str, Any] | None = None,
        released: bool = False,
    ) -> None:
        """Ends this worker's hold: a terminal state, PAUSED, or QUEUED again (`released`: handed back on purpose,
        not counted against max_attempts). Raises LeaseLost."""
        async with self._store.pool.connection() as conn, conn.transaction():
            cur = await conn.execute(f"SELECT cancel_requested FROM jobs WHERE {_FENCE} FOR UPDATE", self._fence(claim))
            held = await cur.fetchone()
            if held is None:
                raise LeaseLost(claim.id)
            if held[0] and state in (JobState.QUEUED, JobState.PAUSED):
                # A cancel that arrived while the row was being handed back wins: it is not run again.
                state, message, released = JobState.CANCELLED, "cancelled", False
            cur = await conn.execute(
                f"""
                UPDATE jobs SET
                    state = %(state)s, lease_owner = NULL, lease_expires_at = NULL, message = %(message)s,
                    progress = coalesce(%(progress)s, progress), status = coalesce(%(status)s, status),
                    error = coalesce(%(error)s, error), result = coalesce(%(result)s, result),
                    usage = coalesce(%(usage)s, usage), released = released + %(released)s,
                    pause_requested = CASE WHEN %(state)s = 'paused' THEN false ELSE pause_requested END,
                    run_after = now(),
                    finished_at = CASE WHEN %(terminal)s THEN now() ELSE NULL END
                WHERE {_FENCE}
                RETURNING id
                """,
                {
                    **self._fence(claim),
                    "state": state.value,
                    "message": message,
                    "progress": progress,
                    "status": Jsonb(status) if status is not None else None,
                    "error": Jsonb(error.to_json()) if error is not None else None,
                    "result": Jsonb(result) if result is not None else None,
                    "usage": Jsonb(usage) if usage is not None else None,
                    "released": 1 if released else 0,
                    "terminal": state in TERMINAL,
                },
            )
            if await cur.fetchone() is None:
                raise LeaseLost(claim.id)
            await append_events(conn, claim.id, [*events, JobEvent(EventType.STATE, state, message, progress or 0)])
            if state is JobState.QUEUED:
                await conn.execute("SELECT pg_notify(%s, %s)", [QUEUED_CHANNEL, claim.job.lane.value])

    async def reap(self, limit: int = 20) -> int:
        """Rows whose lease expired (their worker died or lost the database): a cancelling one is cancelled, one
        with lost claims to spare is queued again after a backoff, the rest fail. Returns how many it handled."""
        handled = 0
        async with self._store.pool.connection() as conn, conn.transaction():
            cur = conn.cursor(row_factory=dict_row)
            await cur.execute(
                "SELECT id, queue, state, attempt, released, max_attempts, lease_owner, progress FROM jobs "
                "WHERE lease_owner IS NOT NULL AND lease_expires_at < now() "
                "ORDER BY lease_expires_at FOR UPDATE SKIP LOCKED LIMIT %s",
                [limit],
            )
            for row in await cur.fetchall():
                handled += 1
                lost = f"worker {row['lease_owner']} lost its lease during attempt {row['attempt']}"
                lost_claims = row["attempt"] - row["released"]
                if row["state"] == JobState.CANCELLING.value:
                    state, message, error = JobState.CANCELLED, f"cancelled ({lost})", None
                elif lost_claims >= row["max_attempts"]:
                    state = JobState.FAILED
                    message = f"failed: {lost_claims} attempts lost their worker (max_attempts {row['max_attempts']})"
                    error = Failure("ATTEMPTS_EXHAUSTED", message, 10, {"attempts": str(row["attempt"])})
                else:
                    state, message, error = JobState.QUEUED, f"retrying: {lost}", None
                backoff = min(self._max_backoff_s, 2.0 ** max(0, lost_claims - 1)) if state is JobState.QUEUED else 0
                await conn.execute(
                    """
                    UPDATE jobs SET state = %s, lease_owner = NULL, lease_expires_at = NULL, message = %s,
                        error = coalesce(%s, error), run_after = now() + %s * interval '1 second',
                        finished_at = CASE WHEN %s THEN now() ELSE NULL END
                    WHERE id = %s
                    """,
                    [state.value, message, Jsonb(error.to_json()) if error else None, backoff, state in TERMINAL,
                     row["id"]],
                )  # fmt: skip
                progress = float(row["progress"])
                await append_events(
                    conn,
                    row["id"],
                    [
                        JobEvent(EventType.ERROR, state, lost, progress),
                        JobEvent(EventType.STATE, state, message, progress),
                    ],
                )
                if state is JobState.QUEUED:
                    await conn.execute("SELECT pg_notify(%s, %s)", [QUEUED_CHANNEL, row["queue"]])
                log.warning("job %s: %s", row["id"], message)
        return handled
