"""TrainingService's job RPCs: create (answers at once, the job queued), read, list, cancel, pause, resume, watch
and the event log. The work itself happens in the durable queue's workers (job_worker.py, training_run.py)."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from forge.training.v1 import training_pb2 as pb

from ..adapters.store.job_notify import JobSignals
from ..adapters.store.job_store import JobStore
from ..domain.jobs import EventType, JobSnapshot, Lane
from .context import CallContext
from .dataset_access import allowed_dataset_path
from .job_owner import list_scope, training_job
from .job_submit import job_spec, queue_job
from .job_watch import follow
from .paging import page_offset, page_size
from .retrain_paths import project_directory, project_source
from .training_convert import EVENT_TYPE_OF, KIND_OF, STATE_OF, event_message, job_message

__all__ = ["JobPolicy", "TrainingJobsServicer"]


@dataclass(frozen=True, slots=True)
class JobPolicy:
    runners: frozenset[str] = frozenset({"local"})
    default_runner: str = "local"
    max_attempts: int = 3
    max_example_chars: int = 100_000
    dataset_roots: Sequence[Path] = field(default_factory=tuple)
    """Where non-admin users' dataset files must lie (admins, and the local operator, may name any file)."""
    project_roots: Sequence[Path] = field(default_factory=tuple)
    """Where a job without a dataset may extract one from (retrain.project_roots; the same rule as Retrain's)."""
    watch_poll_s: float = 5.0


def _token(seq: int) -> str:
    # The same shape as paging.py's tokens, so page_offset() reads it back.
    return base64.urlsafe_b64encode(f"o:{seq}".encode()).decode()


class TrainingJobsServicer:
    def __init__(self, store: JobStore, signals: JobSignals, policy: JobPolicy) -> None:
        self._store = store
        self._signals = signals
        self._policy = policy

    async def _check_paths(self, config: pb.FineTuneConfig) -> None:
        for name, raw in (("path", config.dataset.path), ("eval_path", config.dataset.eval_path)):
            if raw:
                await allowed_dataset_path(f"config.dataset.{name}", raw, self._policy.dataset_roots)

    async def _job(self, job_id: str) -> JobSnapshot:
        return await training_job(self._store, job_id)

    async def CreateJob(self, request: pb.CreateJobRequest, context: CallContext) -> pb.Job:
        spec = job_spec(request.config, self._policy)
        await self._check_paths(request.config)
        d = request.config.dataset
        if not (d.examples or d.path or d.rag_namespace):
            # No dataset: extracted from the project's repository when the job runs (AI Forge's extract_data).
            where = await project_directory(
                request.config.project_path, self._policy.project_roots, "config.project_path"
            )
            spec.update(await project_source(where))
        job = await queue_job(
            self._store, self._policy, spec, kind="fine_tune", message="Fine-tuning job queued",
            request_key=request.request_id or None,
        )  # fmt: skip
        return job_message(job)

    async def GetJob(self, request: pb.GetJobRequest, context: CallContext) -> pb.Job:
        return job_message(await self._job(request.job_id))

    async def ListJobs(self, request: pb.ListJobsRequest, context: CallContext) -> pb.ListJobsResponse:
        size = page_size(request.page_size, default=50, maximum=500)
        offset = page_offset(request.page_token)
        states = [STATE_OF[request.state]] if request.state else []
        jobs, total = await self._store.page(
            Lane.TRAINING,
            list_scope(request.user_id),
            offset=offset,
            limit=size,
            states=states,
            kind=KIND_OF.get(request.kind, ""),
            project=request.project_name,
        )
        after = offset + len(jobs)
        return pb.ListJobsResponse(
            jobs=[job_message(j) for j in jobs], next_page_token=_token(after) if jobs and after < total else ""
        )

    async def CancelJob(self, request: pb.CancelJobRequest, context: CallContext) -> pb.Job:
        await self._job(request.job_id)
        return job_message(await self._store.cancel(request.job_id, request.reason))

    async def PauseJob(self, request: pb.PauseJobRequest, context: CallContext) -> pb.Job:
        await self._job(request.job_id)
        return job_message(await self._store.pause(request.job_id, request.reason))

    async def ResumeJob(self, request: pb.ResumeJobRequest, context: CallContext) -> pb.Job:
        await self._job(request.job_id)
        return job_message(await self._store.resume(request.job_id))

    async def ListJobEvents(self, request: pb.ListJobEventsRequest, context: CallContext) -> pb.ListJobEventsResponse:
        await self._job(request.job_id)
        size = page_size(request.page_size, default=200, maximum=1000)
        after = page_offset(request.page_token)
        types = [EVENT_TYPE_OF[request.type]] if request.type else []
        events = await self._store.events(request.job_id, after, size + 1, types)
        more = len(events) > size
        events = events[:size]
        return pb.ListJobEventsResponse(
            events=[event_message(e) for e in events], next_page_token=_token(events[-1].seq) if more else ""
        )

    async def WatchJob(self, request: pb.WatchJobRequest, context: CallContext) -> AsyncIterator[pb.JobUpdate]:
        job = await self._job(request.job_id)
        yield pb.JobUpdate(sequence=0, job=job_message(job))
        after = request.after_sequence if request.HasField("after_sequence") else job.last_event_seq
        if job.done and after >= job.last_event_seq:
            return
        n = 0
        async for snapshot, events in follow(self._store, self._signals, job.id, after, self._policy.watch_poll_s):
            for e in events:
                if e.type is EventType.LOG and not request.include_logs:
                    continue
                n += 1
                yield pb.JobUpdate(sequence=n, job=job_message(snapshot, at=e), event=event_message(e))
