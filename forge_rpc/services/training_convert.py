"""forge.training.v1 jobs ⇄ the queue's rows: FineTuneConfig checked and completed with its defaults, JobSnapshot →
Job, JobEvent → JobEvent."""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any

from forge.training.v1 import task_pb2, training_pb2
from google.protobuf import json_format

from ..adapters.ollama_deploy import model_name_problem
from ..domain import FieldViolation, InvalidArgument
from ..domain.datasets import check_example
from ..domain.jobs import EventType, Failure, JobEvent, JobSnapshot, JobState
from .retrain_convert import job_plan
from .timestamps import timestamp

__all__ = [
    "EVENT_TYPES",
    "STATES",
    "checked_config",
    "deployment_message",
    "event_message",
    "failure_message",
    "job_message",
    "validation_message",
]

STATES: dict[JobState, training_pb2.JobState.ValueType] = {
    JobState.QUEUED: training_pb2.JOB_STATE_QUEUED,
    JobState.PREPARING: training_pb2.JOB_STATE_PREPARING,
    JobState.TRAINING: training_pb2.JOB_STATE_TRAINING,
    JobState.EVALUATING: training_pb2.JOB_STATE_EVALUATING,
    JobState.RUNNING: training_pb2.JOB_STATE_TRAINING,
    JobState.COMPLETED: training_pb2.JOB_STATE_COMPLETED,
    JobState.FAILED: training_pb2.JOB_STATE_FAILED,
    JobState.CANCELLING: training_pb2.JOB_STATE_CANCELLING,
    JobState.CANCELLED: training_pb2.JOB_STATE_CANCELLED,
    JobState.PAUSED: training_pb2.JOB_STATE_PAUSED,
}
STATE_OF = {v: k for k, v in STATES.items() if k is not JobState.RUNNING}

EVENT_TYPES: dict[EventType, training_pb2.JobEventType.ValueType] = {
    EventType.STATE: training_pb2.JOB_EVENT_TYPE_STATE,
    EventType.PROGRESS: training_pb2.JOB_EVENT_TYPE_PROGRESS,
    EventType.LOG: training_pb2.JOB_EVENT_TYPE_LOG,
    EventType.CHECKPOINT: training_pb2.JOB_EVENT_TYPE_CHECKPOINT,
    EventType.ARTIFACT: training_pb2.JOB_EVENT_TYPE_ARTIFACT,
    EventType.ERROR: training_pb2.JOB_EVENT_TYPE_ERROR,
    EventType.ATTEMPT: training_pb2.JOB_EVENT_TYPE_ATTEMPT,
}
EVENT_TYPE_OF = {v: k for k, v in EVENT_TYPES.items()}

KINDS = {"fine_tune": training_pb2.JOB_KIND_FINE_TUNE, "retrain": training_pb2.JOB_KIND_RETRAIN}
KIND_OF = {v: k for k, v in KINDS.items()}


def checked_config(
    config: training_pb2.FineTuneConfig, *, default_runner: str, runners: set[str], max_example_chars: int
) -> dict[str, Any]:
    """The config with every default filled in, as stored with the job; INVALID_ARGUMENT naming each bad field
    (and each bad inline example by its position)."""
    c = training_pb2.FineTuneConfig()
    c.CopyFrom(config)
    bad: list[FieldViolation] = []

    def need(ok: bool, field: str, problem: str) -> None:
        if not ok:
            bad.append(FieldViolation(f"config.{field}", problem))

    need(bool(c.base_model.strip()), "base_model", "name the base model (a Hugging Face id)")
    for name in ("epochs", "lora_rank", "lora_alpha", "batch_size", "gradient_accumulation_steps", "max_seq_length"):
        need(getattr(c, name) >= 0, name, "must not be negative")
    for name in ("max_steps", "warmup_steps", "save_steps", "eval_steps"):
        need(getattr(c, name) >= 0, name, "must not be negative")
    need(math.isfinite(c.learning_rate) and c.learning_rate >= 0, "learning_rate", "must be a positive number")
    need(0.0 <= c.lora_dropout < 1.0, "lora_dropout", "must be in [0, 1)")
    runner = c.runner or default_runner
    need(runner in runners, "runner", f"must be one of {', '.join(sorted(runners))} on this server")
    d = c.dataset
    sources = [bool(d.examples), bool(d.path), bool(d.rag_namespace)]
    need(sum(sources) <= 1, "dataset", "give at most one of examples, path and rag_namespace")
    need(not d.HasField("eval_fraction") or 0.0 <= d.eval_fraction < 1.0, "dataset.eval_fraction", "must be in [0, 1)")
    need(d.max_examples >= 0, "dataset.max_examples", "must not be negative")
    name_problem = model_name_problem(c.output_model_name) if c.output_model_name else None
    need(name_problem is None, "output_model_name", name_problem or "")
    for i, example in enumerate(d.examples):
        problem = check_example(json_format.MessageToDict(example), max_example_chars)
        if problem is not None:
            bad.append(FieldViolation(f"config.dataset.examples[{i}]", problem))
    if bad:
        raise InvalidArgument(bad)
    c.runner = runner
    c.epochs = c.epochs or 3
    c.learning_rate = c.learning_rate or 2e-4
    c.lora_rank = c.lora_rank or 16
    c.lora_alpha = c.lora_alpha or 2 * c.lora_rank
    c.batch_size = c.batch_size or 4
    c.gradient_accumulation_steps = c.gradient_accumulation_steps or 1
    c.max_seq_length = c.max_seq_length or 512
    c.save_steps = c.save_steps or 50
    if not c.HasField("seed"):
        c.seed = 42
    if not d.HasField("eval_fraction") and not d.eval_path:
        c.dataset.eval_fraction = 0.1
    return json_format.MessageToDict(c, preserving_proto_field_name=True)


def failure_message(f: Failure) -> task_pb2.Failure:
    return task_pb2.Failure(code=f.code, reason=f.reason, message=f.message, metadata=f.metadata)


def validation_message(job_id: str, stored: dict[str, Any], markdown: str) -> training_pb2.Validation:
    """A validation as kept in the job's `result["validation"]`."""
    m = stored.get("metrics") or {}
    out = training_pb2.Validation(
        job_id=job_id,
        passed=bool(stored.get("passed")),
        metrics=training_pb2.ValidationMetrics(
            final_loss=float(m.get("final_loss") or 0.0),
            perplexity=float(m.get("perplexity") or 0.0),
            base_perplexity=float(m.get("base_perplexity") or 0.0),
            eval_loss=float(m.get("eval_loss") or 0.0),
            eval_tokens=int(m.get("eval_tokens") or 0),
            eval_examples=int(m.get("eval_examples") or 0),
        ),
        report_path=str(stored.get("report_path", "")),
        report_markdown=markdown,
    )
    if stored.get("validated_at"):
        out.validated_at.CopyFrom(timestamp(datetime.fromisoformat(str(stored["validated_at"]))))
    return out


def deployment_message(job_id: str, stored: dict[str, Any]) -> training_pb2.Deployment:
    """A deployment as kept in the job's `result["deployment"]`."""
    out = training_pb2.Deployment(
        job_id=job_id,
        success=bool(stored.get("success")),
        model_name=str(stored.get("model_name", "")),
        gguf_path=str(stored.get("gguf_path", "")),
        modelfile=str(stored.get("modelfile", "")),
        ollama_host=str(stored.get("ollama_host", "")),
        message=str(stored.get("message", "")),
    )
    if stored.get("deployed_at"):
        out.deployed_at.CopyFrom(timestamp(datetime.fromisoformat(str(stored["deployed_at"]))))
    return out


def job_message(job: JobSnapshot, at: JobEvent | None = None) -> training_pb2.Job:
    """The job; with `at`, as it stood right after that event (state and progress as the event recorded)."""
    s = job.status
    config = training_pb2.FineTuneConfig()
    json_format.ParseDict(job.spec, config, ignore_unknown_fields=True)
    state = at.state if at is not None else job.state
    a = s.get("artifacts", {})
    out = training_pb2.Job(
        job_id=job.id,
        kind=KINDS.get(job.kind, training_pb2.JOB_KIND_UNSPECIFIED),
        state=STATES[state],
        status=state.value,
        message=job.message,
        progress=at.progress if at is not None else job.progress,
        current_epoch=int(s.get("epoch", 0)),
        total_epochs=int(s.get("total_epochs") or config.epochs),
        current_step=int(s.get("step", 0)),
        total_steps=int(s.get("total_steps", 0)),
        metrics={k: float(v) for k, v in (s.get("metrics") or {}).items()},
        config=config,
        created_at=timestamp(job.created_at),
        updated_at=timestamp(job.updated_at),
        user_id=job.owner or "",
        attempt=job.attempt,
        max_attempts=job.max_attempts,
        runner=config.runner,
        pause_requested=job.pause_requested,
        artifacts=training_pb2.JobArtifacts(
            output_dir=a.get("output_dir", ""),
            adapter_path=a.get("adapter_path", ""),
            checkpoint_path=a.get("checkpoint_path", ""),
            log_path=a.get("log_path", ""),
        ),
        last_event_sequence=at.seq if at is not None else job.last_event_seq,
    )
    if "loss" in s:
        out.loss = float(s["loss"])
    if "eval_loss" in s:
        out.eval_loss = float(s["eval_loss"])
    if "eta_sec" in s and not job.done:
        out.eta_sec = int(s["eta_sec"])
    if job.error is not None:
        out.error.CopyFrom(failure_message(job.error))
    if job.result and isinstance(job.result.get("validation"), dict):
        out.validation.CopyFrom(validation_message(job.id, job.result["validation"], ""))
    if job.result and isinstance(job.result.get("deployment"), dict):
        out.deployment.CopyFrom(deployment_message(job.id, job.result["deployment"]))
    if job.kind == "retrain":
        out.plan.CopyFrom(job_plan(job))
    if job.started_at is not None:
        out.started_at.CopyFrom(timestamp(job.started_at))
    if job.finished_at is not None:
        out.finished_at.CopyFrom(timestamp(job.finished_at))
    return out


def event_message(e: JobEvent) -> training_pb2.JobEvent:
    out = training_pb2.JobEvent(
        sequence=e.seq,
        job_id=e.job_id,
        type=EVENT_TYPES[e.type],
        state=STATES[e.state],
        message=e.message,
        progress=e.progress,
        epoch=e.epoch,
        step=e.step,
        artifact=e.artifact,
    )
    if e.time is not None:
        out.time.CopyFrom(timestamp(e.time))
    if e.loss is not None:
        out.loss = e.loss
    if e.eval_loss is not None:
        out.eval_loss = e.eval_loss
    if e.data:
        out.data.update(e.data)
    return out
