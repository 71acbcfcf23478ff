"""TrainingService's task RPCs (seeds 003 and 004): submit a chat, batch-chat or RAG request to the durable queue
(answered at once, QUEUED), then read it, list, cancel, fetch its result or watch it until it finishes. The
execution is task_execution.py's, in whichever replica's worker claims it (priority order, then submission order).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime

from forge.training.v1 import task_pb2, training_pb2
from google.protobuf import json_format

from ..adapters.store.job_notify import JobSignals
from ..adapters.store.job_store import JobStore
from ..domain import FieldViolation, InvalidArgument
from ..domain.jobs import EventType, JobSnapshot, Lane, new_task_id
from .context import CallContext, principal
from .job_owner import caller_json, list_scope, visible
from .job_watch import follow
from .paging import next_page_token, page_offset, page_size
from .task_convert import TASK_STATE_OF, estimate, task_message, task_result
from .task_execution import TASK_KINDS, authorize, parse_payload, task_models

__all__ = ["TasksServicer"]

MAX_PRIORITY = 100


class TasksServicer:
    def __init__(
        self,
        store: JobStore,
        signals: JobSignals,
        kinds: Sequence[str],
        *,
        concurrency: int,
        max_attempts: int = 3,
        watch_poll_s: float = 5.0,
    ) -> None:
        self._store = store
        self._signals = signals
        self._kinds = list(kinds)
        self._concurrency = concurrency
        self._max_attempts = max_attempts
        self._watch_poll_s = watch_poll_s

    async def _task(self, task_id: str) -> JobSnapshot:
        if not task_id:
            raise InvalidArgument([FieldViolation("task_id", "required")])
        job = visible(await self._store.get(task_id), "task", task_id)
        if job.lane is not Lane.TASKS:
            raise InvalidArgument([FieldViolation("task_id", f"{task_id!r} is a training job, not a task")])
        return job

    async def _message(self, job: JobSnapshot) -> task_pb2.Task:
        if job.done:
            return task_message(job)
        ahead, mean_s = await self._store.queue_estimate(job)
        return task_message(job, eta=estimate(datetime.now(UTC), ahead, mean_s, self._concurrency))

    async def CreateTask(self, request: training_pb2.CreateTaskRequest, context: CallContext) -> task_pb2.Task:
        priority = request.priority if request.HasField("priority") else 5
        if not 0 <= priority <= MAX_PRIORITY:
            raise InvalidArgument([FieldViolation("priority", f"must be 0 (most urgent) to {MAX_PRIORITY}")])
        payload = json_format.MessageToDict(request.payload)
        message = parse_payload(request.kind, payload, self._kinds)
        who = principal.get()
        # Refused now rather than failing later: the worker checks the same rights again when it runs the task.
        for model in task_models(message):
            authorize(who, TASK_KINDS[request.kind][1], model)
        job = await self._store.create(
            job_id=new_task_id(),
            lane=Lane.TASKS,
            kind=request.kind,
            owner=who.user_id,
            principal=caller_json(who),
            spec=payload,
            priority=priority,
            max_attempts=self._max_attempts,
            message="Task queued",
            request_key=request.request_id or None,
        )
        return await self._message(job)

    async def GetTask(self, request: training_pb2.GetTaskRequest, context: CallContext) -> task_pb2.Task:
        return await self._message(await self._task(request.task_id))

    async def ListTasks(
        self, request: training_pb2.ListTasksRequest, context: CallContext
    ) -> training_pb2.ListTasksResponse:
        size = page_size(request.page_size, default=50, maximum=500)
        offset = page_offset(request.page_token)
        rows, total = await self._store.page(
            Lane.TASKS,
            list_scope(request.user_id),
            offset=offset,
            limit=size,
            states=TASK_STATE_OF.get(request.state, []),
            kind=request.kind,
        )
        return training_pb2.ListTasksResponse(
            tasks=[task_message(r) for r in rows], next_page_token=next_page_token(offset, len(rows), total)
        )

    async def CancelTask(self, request: training_pb2.CancelTaskRequest, context: CallContext) -> task_pb2.Task:
        await self._task(request.task_id)
        return task_message(await self._store.cancel(request.task_id, "cancelled by the caller"))

    async def GetTaskResult(
        self, request: training_pb2.GetTaskResultRequest, context: CallContext
    ) -> task_pb2.TaskResult:
        return task_result(await self._task(request.task_id))

    async def WatchTask(
        self, request: training_pb2.WatchTaskRequest, context: CallContext
    ) -> AsyncIterator[task_pb2.TaskUpdate]:
        job = await self._task(request.task_id)
        yield task_pb2.TaskUpdate(sequence=0, task=await self._message(job))
        if job.done:
            return
        n = 0
        async for snapshot, events in follow(
            self._store, self._signals, job.id, job.last_event_seq, self._watch_poll_s
        ):
            for e in events:
                if e.type not in (EventType.STATE, EventType.PROGRESS):
                    continue
                n += 1
                yield task_pb2.TaskUpdate(sequence=n, task=task_message(snapshot, state=e.state, progress=e.progress))
