"""Jobs and tasks in the durable queue: their states, what a worker may do with them, and their snapshots.

One queue serves two lanes: `training` (fine-tuning jobs, run by a trainer process) and `tasks` (chat, batch-chat
and RAG requests run in the background). A row's life:

    queued → preparing → training → evaluating → completed | failed      (training lane)
    queued → running → completed | failed                                 (tasks lane)
    any live state → cancelling → cancelled;  queued | live → paused → queued (ResumeJob)

A worker owns a live row through a lease; `attempt` counts claims. A lost lease (dead worker) requeues the row
until `max_attempts` claims were lost; a claim handed back on purpose (shutdown, pause) does not count.
"""

from __future__ import annotations

import enum
import secrets
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

__all__ = [
    "LIVE",
    "TERMINAL",
    "EventType",
    "Failure",
    "JobEvent",
    "JobSnapshot",
    "JobState",
    "Lane",
    "new_job_id",
    "new_task_id",
]


class Lane(enum.StrEnum):
    TRAINING = "training"
    TASKS = "tasks"


class JobState(enum.StrEnum):
    QUEUED = "queued"
    PREPARING = "preparing"
    TRAINING = "training"
    EVALUATING = "evaluating"
    RUNNING = "running"
    """The tasks lane's one working state."""
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLING = "cancelling"
    CANCELLED = "cancelled"
    PAUSED = "paused"


TERMINAL = frozenset({JobState.COMPLETED, JobState.FAILED, JobState.CANCELLED})
#: States in which a worker holds the row's lease.
LIVE = frozenset({JobState.PREPARING, JobState.TRAINING, JobState.EVALUATING, JobState.RUNNING, JobState.CANCELLING})
#: The states a trainer may announce itself; the rest are forge's to decide.
WORKER_STATES = frozenset({JobState.PREPARING, JobState.TRAINING, JobState.EVALUATING})


class EventType(enum.StrEnum):
    STATE = "state"
    PROGRESS = "progress"
    LOG = "log"
    CHECKPOINT = "checkpoint"
    ARTIFACT = "artifact"
    ERROR = "error"
    ATTEMPT = "attempt"


@dataclass(frozen=True, slots=True)
class Failure:
    """Why a row failed: the reason and message its RPC error would carry (task.proto `Failure`)."""

    reason: str
    message: str
    code: int = 9
    """gRPC status code by value; FAILED_PRECONDITION unless the cause says otherwise."""
    metadata: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"code": self.code, "reason": self.reason, "message": self.message, "metadata": self.metadata}

    @staticmethod
    def from_json(data: dict[str, Any]) -> Failure:
        return Failure(
            reason=str(data.get("reason", "")),
            message=str(data.get("message", "")),
            code=int(data.get("code", 9)),
            metadata={str(k): str(v) for k, v in (data.get("metadata") or {}).items()},
        )


@dataclass(frozen=True, slots=True)
class JobEvent:
    """One entry of a row's append-only log. `seq` is 0 until the store assigns it."""

    type: EventType
    state: JobState
    message: str = ""
    progress: float = 0.0
    epoch: int = 0
    step: int = 0
    loss: float | None = None
    eval_loss: float | None = None
    artifact: str = ""
    data: dict[str, Any] = field(default_factory=dict)
    seq: int = 0
    job_id: str = ""
    time: datetime | None = None


@dataclass(frozen=True, slots=True)
class JobSnapshot:
    """A row of the queue as the API shows it."""

    id: str
    lane: Lane
    kind: str
    state: JobState
    owner: str | None
    spec: dict[str, Any]
    priority: int
    attempt: int
    max_attempts: int
    pause_requested: bool
    cancel_requested: bool
    message: str
    progress: float
    status: dict[str, Any]
    result: dict[str, Any] | None
    error: Failure | None
    usage: dict[str, Any] | None
    last_event_seq: int
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None
    finished_at: datetime | None

    @property
    def done(self) -> bool:
        return self.state in TERMINAL


def _stamp(prefix: str) -> str:
    # Seed 001 shows "job_20240117_120000"; the random tail keeps two jobs created in one second apart.
    return f"{prefix}_{time.strftime('%Y%m%d_%H%M%S', time.gmtime())}_{secrets.token_hex(3)}"


def new_job_id(kind: str) -> str:
    return _stamp("agent" if kind == "retrain" else "job")


def new_task_id() -> str:
    # Time-ordered like a ULID (milliseconds, then randomness), so ids sort by submission.
    return f"task_{int(time.time() * 1000):012x}{secrets.token_hex(5)}"
