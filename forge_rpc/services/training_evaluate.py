"""Re-evaluating a completed job on another held-out file (ValidateJob's `dataset_path`): the configured trainer
command runs once more, in evaluate mode, as a subprocess of this replica (the core never imports torch).

The trainer gets a spec with `"mode": "evaluate"` (docs/training-worker-protocol.md), measures the base model and
the trained one on the file, prints the same progress records as after training and exits. Its records fold into
a status exactly as a training run's do (domain/progress.py), so the judging that follows is the same.

The run lives only as long as the call: the caller leaving (a cancel, a deadline) or `timeout_s` passing stops its
whole process group. Evaluations take a slot each (`max_concurrent`): a model loaded per caller at once would
starve the host.
"""

from __future__ import annotations

import asyncio
import json
import secrets
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..adapters.runners import LocalRunner, Runner, RunnerError, RunSpec
from ..domain import DeadlineExceeded, FailedPrecondition
from ..domain.jobs import JobSnapshot, JobState
from ..domain.progress import ProgressTracker, parse_line

__all__ = ["EvaluateSettings", "Evaluator"]


@dataclass(frozen=True, slots=True)
class EvaluateSettings:
    command: tuple[str, ...]
    """The trainer command (training.worker_command); the evaluate spec's path follows."""
    env: Mapping[str, str]
    """Its environment (training.worker_env)."""
    dataset_roots: Sequence[Path] = field(default_factory=tuple)
    """Where non-admin users' held-out files must lie (training.dataset_roots)."""
    max_example_chars: int = 100_000
    timeout_s: float = 1800.0
    """An evaluation still running after this is stopped (DEADLINE_EXCEEDED)."""
    max_concurrent: int = 1


def evaluate_spec(job: JobSnapshot, job_dir: Path, eval_path: Path, eval_examples: int) -> dict[str, Any]:
    config = dict(job.spec)
    config["dataset"] = {k: v for k, v in (config.get("dataset") or {}).items() if k != "examples"}
    artifacts = job.status.get("artifacts") or {}
    return {
        "mode": "evaluate",
        "job_id": job.id,
        "base_model": str(job.spec.get("base_model", "")),
        "config": config,
        "adapter_path": str(artifacts.get("adapter_path", "")),
        "model_path": str(artifacts.get("model_path", "")),
        "eval_path": str(eval_path),
        "eval_examples": eval_examples,
        "max_seq_length": int(job.spec.get("max_seq_length") or 512),
        "batch_size": int(job.spec.get("batch_size") or 4),
        "output_dir": str(job_dir / "output"),
    }


class Evaluator:
    def __init__(self, settings: EvaluateSettings, runner: Runner | None = None) -> None:
        self.settings = settings
        self._runner = runner or LocalRunner()
        self._slots = asyncio.Semaphore(max(1, settings.max_concurrent))

    async def evaluate(self, job: JobSnapshot, job_dir: Path, eval_path: Path, eval_examples: int) -> dict[str, Any]:
        """The status the trainer's records fold into (`eval_loss`, `metrics`), as a training run's would."""
        artifacts = job.status.get("artifacts") or {}
        if not (artifacts.get("adapter_path") or artifacts.get("model_path")):
            raise FailedPrecondition(f"job {job.id!r} produced no adapter or model to evaluate", "NO_ARTIFACT")
        spec = evaluate_spec(job, job_dir, eval_path, eval_examples)
        spec_path = job_dir / f"evaluate-{secrets.token_hex(4)}.json"
        await asyncio.to_thread(_write_spec, job.id, spec_path, spec)
        env = {
            **self.settings.env,
            "FORGE_JOB_ID": job.id,
            "FORGE_JOB_SPEC": str(spec_path),
            "FORGE_JOB_DIR": str(job_dir),
            "FORGE_OUTPUT_DIR": spec["output_dir"],
            "FORGE_MODE": "evaluate",
            "PYTHONUNBUFFERED": "1",
        }
        try:
            async with self._slots:
                try:
                    async with asyncio.timeout(self.settings.timeout_s):
                        return await self._run(
                            RunSpec(job.id, 0, (*self.settings.command, str(spec_path)), env, job_dir)
                        )
                except TimeoutError:
                    raise DeadlineExceeded(
                        f"evaluating job {job.id!r} took longer than {self.settings.timeout_s:g} s; the trainer was "
                        "stopped (training.evaluate_timeout_s)"
                    ) from None
        finally:
            await asyncio.shield(asyncio.to_thread(spec_path.unlink, missing_ok=True))

    async def _run(self, spec: RunSpec) -> dict[str, Any]:
        try:
            run = await self._runner.submit(spec)
        except RunnerError as exc:
            raise FailedPrecondition(f"cannot evaluate: {exc}", "EVALUATION_FAILED") from None
        tracker = ProgressTracker(JobState.EVALUATING)
        tail: deque[str] = deque(maxlen=8)
        ended = None
        try:
            async for line in run.lines():
                record = parse_line(line)
                if record is None:
                    tail.append(line)
                else:
                    tracker.apply(record)
            ended = await run.wait()
        finally:
            if ended is None:
                # Cancelled or out of time: shielded, so a second cancel cannot leave the group running.
                await asyncio.shield(run.stop(0))
        assert ended is not None
        if tracker.error:
            raise FailedPrecondition(f"the trainer could not evaluate: {tracker.error}", "EVALUATION_FAILED")
        if ended.code != 0:
            last = " | ".join(tail)
            detail = f"the trainer {ended.detail} while evaluating" + (f"; last output: {last}" if last else "")
            raise FailedPrecondition(detail, "EVALUATION_FAILED")
        if "eval_loss" not in tracker.status:
            raise FailedPrecondition(
                "the trainer ended without reporting a held-out loss (eval_loss)", "EVALUATION_FAILED"
            )
        return tracker.status


def _write_spec(job_id: str, path: Path, spec: dict[str, Any]) -> None:
    if not path.parent.is_dir():
        # Trained on a replica whose job directories this one does not share.
        raise FailedPrecondition(f"job {job_id!r} has no directory on this server ({path.parent})", "JOB_FILES_MISSING")
    path.write_text(json.dumps(spec, indent=2, ensure_ascii=False), encoding="utf-8")
