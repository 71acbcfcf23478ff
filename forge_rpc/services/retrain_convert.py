"""forge.training.v1 retrain messages ⇄ the monitor's domain: the measured changes, the plan (with each step's
status once a job follows it), and the config a retrain job trains with."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from forge.training.v1 import training_pb2 as pb
from google.protobuf import json_format

from ..domain import FieldViolation, InvalidArgument
from ..domain.jobs import JobSnapshot
from ..domain.retrain import Changes, Decision, PlanStep, step_statuses
from .timestamps import timestamp

__all__ = ["job_plan", "metrics_message", "plan_json", "plan_message", "retrain_config"]

_MAX_CRITICAL_SHOWN = 1000


def metrics_message(
    changes: Changes, decision: Decision, last: JobSnapshot | None, threshold: int
) -> pb.RetrainMetrics:
    out = pb.RetrainMetrics(
        commits_since_last_train=changes.commits,
        files_changed=len(changes.files),
        critical_paths_changed=bool(decision.critical),
        changed_critical_paths=decision.critical[:_MAX_CRITICAL_SHOWN],
        last_trained_commit=changes.base,
        head_commit=changes.head,
        files_threshold=threshold,
    )
    if last is not None and last.finished_at is not None:
        out.last_trained_at.CopyFrom(timestamp(last.finished_at))
    return out


def plan_json(steps: Sequence[PlanStep]) -> list[dict[str, Any]]:
    """The plan as a retrain job's spec keeps it."""
    return [{"name": s.name, "estimated_minutes": s.minutes} for s in steps]


def plan_message(steps: Sequence[PlanStep], statuses: Sequence[str] = ()) -> pb.RetrainPlan:
    return pb.RetrainPlan(
        plan=[
            pb.PlanStep(id=str(i), name=s.name, estimated_minutes=s.minutes, status=statuses[i - 1] if statuses else "")
            for i, s in enumerate(steps, start=1)
        ],
        estimated_duration_minutes=round(sum(s.minutes for s in steps), 1),
    )


def job_plan(job: JobSnapshot) -> pb.RetrainPlan:
    """A RETRAIN job's plan with where it stands; empty for other jobs."""
    steps = [PlanStep(str(s["name"]), float(s["estimated_minutes"])) for s in job.spec.get("plan") or []]
    if not steps:
        return pb.RetrainPlan()
    deployment = (job.result or {}).get("deployment")
    deployed = bool(deployment.get("success")) if isinstance(deployment, dict) else None
    reason = job.error.reason if job.error is not None else ""
    return plan_message(steps, step_statuses([s.name for s in steps], job.state, job.status, reason, deployed))


def retrain_config(
    request: pb.RetrainRequest, last_spec: dict[str, Any] | None, project: Path, base_model: str
) -> pb.FineTuneConfig:
    """The request's settings over the project's last job's over the defaults. The dataset is always extracted
    afresh from the repository, so a dataset source in the request is INVALID_ARGUMENT."""
    d = request.config.dataset
    if d.examples or d.path or d.rag_namespace or d.eval_path:
        problem = "a retrain extracts its dataset (and held-out split) from the repository: use CreateJob for others"
        raise InvalidArgument([FieldViolation("config.dataset", problem)])
    config = pb.FineTuneConfig()
    if last_spec:
        json_format.ParseDict(last_spec, config, ignore_unknown_fields=True)
        for source in ("examples", "path", "rag_namespace", "eval_path"):
            config.dataset.ClearField(source)
    config.MergeFrom(request.config)
    config.project_path = str(project)
    config.project_name = config.project_name or project.name
    config.base_model = config.base_model or base_model
    # This request says whether to deploy, not the last one.
    config.auto_deploy = request.auto_deploy or request.config.auto_deploy
    return config
