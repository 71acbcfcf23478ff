"""TrainingService.ValidateJob (seed 001's `POST /validate/{job_id}`): judges a completed job by the held-out loss
and perplexity its trainer measured — or, given a `dataset_path`, measured now on that file by the trainer in
evaluate mode (training_evaluate.py) — writes the markdown report into the job's output directory, and keeps the
outcome with the job (Job.validation)."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from forge.training.v1 import training_pb2 as pb

from ..adapters.runners import Workspace
from ..adapters.store.job_store import JobStore
from ..domain import FailedPrecondition
from ..domain.evaluation import Measured, judge, report_markdown
from ..domain.jobs import EventType, JobEvent, JobSnapshot, JobState
from .context import CallContext
from .dataset_access import allowed_dataset_path, read_dataset_file
from .job_owner import training_job
from .training_convert import validation_message
from .training_evaluate import Evaluator

__all__ = ["ValidationServicer"]


class ValidationServicer:
    def __init__(self, store: JobStore, workspace: Workspace, evaluator: Evaluator | None = None) -> None:
        self._store = store
        self._workspace = workspace
        self._evaluator = evaluator

    async def ValidateJob(self, request: pb.ValidateJobRequest, context: CallContext) -> pb.Validation:
        job = await training_job(self._store, request.job_id)
        if job.state is not JobState.COMPLETED:
            raise FailedPrecondition(f"job {job.id!r} is {job.state.value}; only a completed job can be validated",
                                     "JOB_NOT_COMPLETED")  # fmt: skip
        measured, dataset = Measured.from_status(job.status), ""
        if request.dataset_path:
            measured, where = await self._reevaluate(job, request.dataset_path)
            dataset = str(where)
        passed, why = judge(measured, request.max_perplexity if request.HasField("max_perplexity") else None)
        now = datetime.now(UTC)
        markdown = report_markdown(job.id, str(job.spec.get("base_model", "")), measured, passed, why, now, dataset)
        path = await self._workspace.write_report(job.id, "validation_report.md", markdown)
        stored: dict[str, Any] = {
            "passed": passed,
            "reason": why,
            "metrics": _metrics(measured),
            "report_path": str(path),
            "validated_at": now.isoformat(),
            **({"dataset_path": dataset} if dataset else {}),
        }
        on = f" on {dataset}" if dataset else ""
        event = JobEvent(
            EventType.ARTIFACT, JobState.COMPLETED, f"validation report{on}: {why}", 100.0, artifact=str(path)
        )
        await self._store.attach_result(job.id, "validation", stored, [event])
        return validation_message(job.id, stored, markdown)

    async def _reevaluate(self, job: JobSnapshot, raw: str) -> tuple[Measured, Path]:
        """The job's numbers measured on the file `raw` (its final training loss stays the trainer's), and the
        file's resolved path."""
        if self._evaluator is None:
            raise FailedPrecondition(
                "re-evaluating on another file is not configured on this server", "EVALUATION_UNAVAILABLE"
            )
        settings = self._evaluator.settings
        path = await allowed_dataset_path("dataset_path", raw, settings.dataset_roots)
        examples = await read_dataset_file("dataset_path", path, settings.max_example_chars)
        status = await self._evaluator.evaluate(job, self._workspace.job_dir(job.id), path, len(examples))
        measured = Measured.from_status({**status, "loss": job.status.get("loss")})
        return dataclasses.replace(measured, eval_examples=measured.eval_examples or len(examples)), path


def _metrics(m: Measured) -> dict[str, Any]:
    return {
        "final_loss": m.final_loss,
        "eval_loss": m.eval_loss,
        "perplexity": m.perplexity,
        "base_perplexity": m.base_perplexity,
        "eval_tokens": m.eval_tokens,
        "eval_examples": m.eval_examples,
    }
