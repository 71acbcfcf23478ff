"""TrainingService's retrain monitor (seed 001's Repo Guardian): CheckRetrain compares a project's git repository
with the commit its last completed training used and says whether the policy calls for a retrain; Retrain plans
one and, when due (or forced), queues it as a RETRAIN job that extracts its dataset from the repository.

A project's history is the caller's own jobs (an admin's: everyone's), so one user's trainings never decide
another's retrain.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from forge.training.v1 import training_pb2 as pb

from ..adapters import git_repo
from ..adapters.project_files import source_files
from ..adapters.store.job_store import JobStore, OwnerScope
from ..adapters.store.retrain_history import RetrainHistory
from ..domain import FailedPrecondition
from ..domain.jobs import JobSnapshot
from ..domain.retrain import Changes, Decision, PlanStep, RetrainPolicy, decide, plan_steps
from .context import CallContext
from .job_owner import list_scope
from .job_submit import job_spec, queue_job
from .retrain_convert import job_plan, metrics_message, plan_json, plan_message, retrain_config
from .retrain_paths import project_directory, project_source
from .timestamps import now
from .training import JobPolicy
from .training_convert import job_message

__all__ = ["RetrainServicer", "RetrainSettings"]


@dataclass(frozen=True, slots=True)
class RetrainSettings:
    policy: RetrainPolicy = field(default_factory=RetrainPolicy)
    project_roots: tuple[Path, ...] = ()
    base_model: str = "HuggingFaceTB/SmolLM2-135M-Instruct"


@dataclass(frozen=True, slots=True)
class _Checked:
    path: Path
    changes: Changes
    decision: Decision
    last: JobSnapshot | None


def _scope() -> OwnerScope:
    return list_scope("", everyone_by_default=True)


def _run_seconds(job: JobSnapshot | None) -> float | None:
    if job is None or job.started_at is None or job.finished_at is None:
        return None
    return (job.finished_at - job.started_at).total_seconds()


async def _plan(checked: _Checked, spec: dict[str, Any]) -> list[PlanStep]:
    return plan_steps(
        source_files=len(await source_files(checked.path)),
        epochs=int(spec.get("epochs", 0)),
        max_steps=int(spec.get("max_steps", 0)),  # int64: a string in the stored JSON
        last_run_s=_run_seconds(checked.last),
        auto_deploy=bool(spec.get("auto_deploy")),
    )


class RetrainServicer:
    def __init__(self, store: JobStore, history: RetrainHistory, jobs: JobPolicy, settings: RetrainSettings) -> None:
        self._store = store
        self._history = history
        self._jobs = jobs
        self._settings = settings

    async def _check(self, raw: str) -> _Checked:
        path = await project_directory(raw, self._settings.project_roots)
        if not await git_repo.is_repository(path):
            raise FailedPrecondition(
                f"{path} is not a git repository: the retrain monitor compares its commits", "NOT_A_GIT_REPOSITORY"
            )
        last = await self._history.last_trained(str(path), _scope())
        base = str((last.spec.get("repository") or {}).get("commit") or "") if last is not None else ""
        changes = await git_repo.changes_since(path, base)
        return _Checked(path, changes, decide(self._settings.policy, changes), last)

    async def CheckRetrain(self, request: pb.CheckRetrainRequest, context: CallContext) -> pb.CheckRetrainResponse:
        checked = await self._check(request.project_path)
        return pb.CheckRetrainResponse(
            should_retrain=checked.decision.should_retrain,
            reason=checked.decision.reason,
            metrics=metrics_message(
                checked.changes, checked.decision, checked.last, self._settings.policy.files_threshold
            ),
            checked_at=now(),
            project_path=str(checked.path),
        )

    async def Retrain(self, request: pb.RetrainRequest, context: CallContext) -> pb.RetrainResponse:
        checked = await self._check(request.project_path or request.config.project_path)
        last_spec = checked.last.spec if checked.last is not None else None
        config = retrain_config(request, last_spec, checked.path, self._settings.base_model)
        spec = job_spec(config, self._jobs)  # a bad config is refused whether or not a retrain is due
        steps = await _plan(checked, spec)
        plan = plan_message(steps)
        decision = checked.decision
        if not decision.should_retrain and not request.force:
            return pb.RetrainResponse(triggered=False, reason=decision.reason, plan=plan)
        # Without force, a project already being retrained is not retrained twice (a scheduler calling this
        # every few minutes would otherwise queue one job per call until the first completes).
        active = None if request.force else await self._history.active(str(checked.path), _scope())
        if active is not None:
            reason = f"job {active.id} is already retraining this project ({active.state.value})"
            return pb.RetrainResponse(triggered=False, reason=reason, plan=plan)
        reason = decision.reason if decision.should_retrain else f"forced ({decision.reason})"
        spec.update(await project_source(checked.path), plan=plan_json(steps))
        job = await queue_job(
            self._store, self._jobs, spec, kind="retrain", message=f"Retrain queued: {reason}", request_key=None
        )
        shown = job_message(job)
        shown.plan.CopyFrom(job_plan(job))
        return pb.RetrainResponse(triggered=True, reason=reason, plan=plan, job_id=job.id, job=shown)
