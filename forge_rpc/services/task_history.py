"""AnalyticsService.ListTaskHistory (seed 003's `/api/tasks/history/`): the task queue's rows, newest first, with
seed 003's `limit`/`offset` as well as page tokens. Users see their own tasks; admins everyone's unless they name
a user."""

from __future__ import annotations

from forge.analytics.v1 import analytics_pb2 as pb

from ..adapters.store.job_store import JobStore
from ..domain import FieldViolation, InvalidArgument
from ..domain.jobs import JobState, Lane
from .context import CallContext
from .job_owner import list_scope
from .paging import next_page_token, page_offset, page_size
from .task_convert import task_message

__all__ = ["TaskHistoryServicer"]

_STATUSES: dict[str, list[JobState]] = {
    "queued": [JobState.QUEUED],
    "running": [JobState.RUNNING, JobState.CANCELLING],
    "completed": [JobState.COMPLETED],
    "failed": [JobState.FAILED],
    "cancelled": [JobState.CANCELLED],
}


class TaskHistoryServicer:
    def __init__(self, store: JobStore) -> None:
        self._store = store

    async def ListTaskHistory(
        self, request: pb.ListTaskHistoryRequest, context: CallContext
    ) -> pb.ListTaskHistoryResponse:
        if request.offset < 0:
            raise InvalidArgument([FieldViolation("offset", "must not be negative")])
        size = page_size(request.page_size or request.limit, default=10, maximum=500)
        offset = page_offset(request.page_token) if request.page_token else request.offset
        states: list[JobState] = []
        if request.status:
            if request.status.lower() not in _STATUSES:
                raise InvalidArgument([FieldViolation("status", f"one of {', '.join(_STATUSES)}")])
            states = _STATUSES[request.status.lower()]
        rows, total = await self._store.page(
            Lane.TASKS, list_scope(request.user_id, everyone_by_default=True), offset=offset, limit=size, states=states
        )
        return pb.ListTaskHistoryResponse(
            total=total,
            tasks=[task_message(r) for r in rows],
            next_page_token=next_page_token(offset, len(rows), total),
        )
