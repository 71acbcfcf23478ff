"""forge.training.v1 tasks ⇄ the queue's rows (lane `tasks`)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from forge.training.v1 import task_pb2
from forge.type.v1 import usage_pb2
from google.protobuf import struct_pb2

from ..domain.jobs import JobSnapshot, JobState
from .timestamps import timestamp
from .training_convert import failure_message

__all__ = ["TASK_STATE_OF", "task_message", "task_prompt", "task_result"]

_STATES: dict[JobState, tuple[task_pb2.TaskState.ValueType, str]] = {
    JobState.QUEUED: (task_pb2.TASK_STATE_QUEUED, "queued"),
    JobState.RUNNING: (task_pb2.TASK_STATE_RUNNING, "running"),
    JobState.CANCELLING: (task_pb2.TASK_STATE_RUNNING, "running"),
    JobState.COMPLETED: (task_pb2.TASK_STATE_COMPLETED, "completed"),
    JobState.FAILED: (task_pb2.TASK_STATE_FAILED, "failed"),
    JobState.CANCELLED: (task_pb2.TASK_STATE_CANCELLED, "cancelled"),
}
TASK_STATE_OF: dict[int, list[JobState]] = {
    task_pb2.TASK_STATE_QUEUED: [JobState.QUEUED],
    task_pb2.TASK_STATE_RUNNING: [JobState.RUNNING, JobState.CANCELLING],
    task_pb2.TASK_STATE_COMPLETED: [JobState.COMPLETED],
    task_pb2.TASK_STATE_FAILED: [JobState.FAILED],
    task_pb2.TASK_STATE_CANCELLED: [JobState.CANCELLED],
}


def task_prompt(kind: str, payload: dict[str, Any]) -> str:
    """What seed 003's history shows as the prompt: the last user message (the first request's, for a batch)."""
    if kind == "chat_batch":
        requests = payload.get("requests") or [{}]
        return task_prompt("chat", requests[0] if isinstance(requests[0], dict) else {})
    if kind == "rag_query":
        return str(payload.get("query", ""))
    if payload.get("prompt"):
        return str(payload["prompt"])
    users = [m for m in payload.get("messages") or () if isinstance(m, dict) and m.get("role") == "user"]
    return str(users[-1].get("content", "")) if users else ""


def _struct(data: dict[str, Any] | None) -> struct_pb2.Struct:
    out = struct_pb2.Struct()
    if data:
        out.update(data)
    return out


def _usage(data: dict[str, Any] | None) -> usage_pb2.Usage | None:
    if not data:
        return None
    return usage_pb2.Usage(
        prompt_tokens=int(data.get("prompt_tokens", 0)),
        completion_tokens=int(data.get("completion_tokens", 0)),
        total_tokens=int(data.get("total_tokens", 0)),
        cost_usd=float(data.get("cost_usd", 0.0)),
        estimated=bool(data.get("estimated", False)),
    )


def task_message(
    job: JobSnapshot, state: JobState | None = None, eta: datetime | None = None, progress: float | None = None
) -> task_pb2.Task:
    """The task; `state` and `progress` override the row's (an update as it stood after an event), `eta` is seed
    004's estimated_completion for a queued or running task."""
    enum, status = _STATES.get(state or job.state, (task_pb2.TASK_STATE_UNSPECIFIED, (state or job.state).value))
    s, usage = job.status, _usage(job.usage)
    out = task_pb2.Task(
        task_id=job.id,
        id=job.id,
        kind=job.kind,
        payload=_struct(job.spec),
        priority=job.priority,
        state=enum,
        status=status,
        progress=job.progress if progress is None else progress,
        created_at=timestamp(job.created_at),
        user_id=job.owner or "",
        attempt=job.attempt,
        prompt=task_prompt(job.kind, job.spec),
        service_used=str(s.get("service_used", "")),
        model_used=str(s.get("model_used", "")),
        execution_time=float(s.get("execution_time", 0.0)),
    )
    if job.result is not None:
        out.result.CopyFrom(_struct(job.result))
    if job.error is not None:
        out.error.CopyFrom(failure_message(job.error))
    if usage is not None:
        out.usage.CopyFrom(usage)
        out.tokens_used = usage.total_tokens
        out.cost = usage.cost_usd
    if job.started_at is not None:
        out.started_at.CopyFrom(timestamp(job.started_at))
    if job.finished_at is not None:
        out.completed_at.CopyFrom(timestamp(job.finished_at))
    if eta is not None:
        out.estimated_completion.CopyFrom(timestamp(eta))
    return out


def task_result(job: JobSnapshot) -> task_pb2.TaskResult:
    enum, status = _STATES.get(job.state, (task_pb2.TASK_STATE_UNSPECIFIED, job.state.value))
    out = task_pb2.TaskResult(task_id=job.id, state=enum, status=status)
    if job.result is not None:
        out.result.CopyFrom(_struct(job.result))
    if job.error is not None:
        out.error.CopyFrom(failure_message(job.error))
    usage = _usage(job.usage)
    if usage is not None:
        out.usage.CopyFrom(usage)
    if job.finished_at is not None:
        out.completed_at.CopyFrom(timestamp(job.finished_at))
    return out


def estimate(now: datetime, ahead: int, mean_s: float | None, concurrency: int) -> datetime:
    """When a task should finish: the rows ahead of it and itself, at the recent mean duration, over the slots."""
    per_task = mean_s if mean_s is not None else 5.0
    return now + timedelta(seconds=per_task * (ahead // max(1, concurrency) + 1))
