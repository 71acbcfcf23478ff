"""A project's training history in the job queue: which job last trained it (so the monitor knows the commit it
used) and whether one is under way. A job belongs to a project when its spec records the repository it was
extracted from (`spec.repository.path`, the resolved directory; `spec.repository.commit`, its HEAD then)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final, LiteralString

from psycopg.rows import dict_row

from ...domain.jobs import TERMINAL, JobSnapshot, JobState, Lane
from .bound import BoundStore
from .job_store import COLUMNS, OwnerScope, snapshot_of

__all__ = ["RetrainHistory"]

_LIVE_OR_WAITING: Final = tuple(s for s in JobState if s not in TERMINAL)


class RetrainHistory(BoundStore):
    what = "job storage"

    async def _newest(
        self, project: str, scope: OwnerScope, states: Sequence[JobState], order: LiteralString
    ) -> JobSnapshot | None:
        owner_filter = "" if scope.everyone else "AND owner IS NOT DISTINCT FROM %s"
        args: list[Any] = [Lane.TRAINING.value, project, [s.value for s in states]]
        args += [] if scope.everyone else [scope.owner]
        async with self._pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(
                f"SELECT {COLUMNS} FROM jobs WHERE queue = %s AND spec->'repository'->>'path' = %s "
                f"AND state = ANY(%s) {owner_filter} ORDER BY {order} DESC, id DESC LIMIT 1",
                args,
            )
            row = await cur.fetchone()
        return snapshot_of(row) if row is not None else None

    async def last_trained(self, project: str, scope: OwnerScope) -> JobSnapshot | None:
        """The project's most recently finished COMPLETED job within `scope`."""
        return await self._newest(project, scope, [JobState.COMPLETED], "finished_at")

    async def active(self, project: str, scope: OwnerScope) -> JobSnapshot | None:
        """The project's newest job that has not finished (queued, running or paused) within `scope`."""
        return await self._newest(project, scope, _LIVE_OR_WAITING, "created_at")
