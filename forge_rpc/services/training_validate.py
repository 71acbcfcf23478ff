"""TrainingService.ValidateJob (seed 001's `POST /validate/{job_id}`): judges a completed job by the held-out loss
and perplexity its trainer measured, writes the markdown report into the job's output directory, and keeps the
outcome with the job (Job.validation)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from forge.training.v1 import training_pb2 as pb

from ..adapters.runners import Workspace
from ..adapters.store.job_store import JobStore
from ..domain import FailedPrecondition, FieldViolation, InvalidArgument, Unimplemented
from ..domain.evaluation import Measured, judge, report_markdown
from ..domain.jobs import EventType, JobEvent, JobState, Lane
from .context import CallContext
from .job_owner import visible
from .training_convert import validation_message

__all__ = ["ValidationServicer"]


class ValidationServicer:
    def __init__(self, store: JobStore, workspace: Workspace) -> None:
        self._store = store
        self._workspace = workspace

    async def ValidateJob(self, request: pb.ValidateJobRequest, context: CallContext) -> pb.Validation:
        if not request.job_id:
            raise InvalidArgument([FieldViolation("job_id", "required")])
        job = visible(await self._store.get(request.job_id), "job", request.job_id)
        if job.lane is not Lane.TRAINING:
            raise InvalidArgument([FieldViolation("job_id", f"{job.id!r} is a task, not a job")])
        if job.state is not JobState.COMPLETED:
            raise FailedPrecondition(f"job {job.id!r} is {job.state.value}; only a completed job can be validated",
                                     "JOB_NOT_COMPLETED")  # fmt: skip
        if request.dataset_path:
            raise Unimplemented("ValidateJob with a dataset_path (re-evaluating on another file)", "issue #6")
        measured = Measured.from_status(job.status)
        passed, why = judge(measured, request.max_perplexity if request.HasField("max_perplexity") else None)
        now = datetime.now(UTC)
        markdown = report_markdown(job.id, str(job.spec.get("base_model", "")), measured, passed, why, now)
        path = await self._workspace.write_report(job.id, "validation_report.md", markdown)
        stored: dict[str, Any] = {
            "passed": passed,
            "reason": why,
            "metrics": _metrics(measured),
            "report_path": str(path),
            "validated_at": now.isoformat(),
        }
        event = JobEvent(EventType.ARTIFACT, JobState.COMPLETED, f"validation report: {why}", 100.0, artifact=str(path))
        await self._store.attach_result(job.id, "validation", stored, [event])
        return validation_message(job.id, stored, markdown)


def _metrics(m: Measured) -> dict[str, Any]:
    return {
        "final_loss": m.final_loss,
        "eval_loss": m.eval_loss,
        "perplexity": m.perplexity,
        "base_perplexity": m.base_perplexity,
        "eval_tokens": m.eval_tokens,
        "eval_examples": m.eval_examples,
    }
