"""`TrainingExecutor`: one attempt of a fine-tuning job. Checks and writes the dataset, starts the trainer on its
runner, turns its output into the job's progress and event log (progress protocol, domain/progress.py), and ends
the attempt as the trainer, the user or forge decide:

- the trainer exits 0 without an `error` record → COMPLETED (then `on_completed` runs: auto_deploy); otherwise
  FAILED with its error (or last lines);
- CancelJob → the trainer's process group is stopped (SIGTERM, SIGKILL after the grace) → CANCELLED;
- PauseJob → at the trainer's next checkpoint record it is stopped → PAUSED (ResumeJob continues from there);
- forge stops → the trainer is stopped and the job queued again, resuming from its latest checkpoint;
- the lease is lost → the trainer is stopped and nothing more is written (another replica owns the job now).

Output is written in batches: whatever arrived while the previous write was in flight goes in the next one, so a
chatty trainer costs a few writes per second, never one per line, and a quiet one's records land at once.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TextIO

from ..adapters.runners import PreparedJob, Run, RunExit, Runner, RunnerError, RunSpec, Workspace
from ..adapters.store.job_leases import Claim, LeaseLost
from ..domain.datasets import DatasetError
from ..domain.jobs import EventType, Failure, JobEvent, JobState
from ..domain.progress import ProgressTracker, parse_line
from .job_worker import Hold

__all__ = ["TrainerSettings", "TrainingExecutor"]


@dataclass(frozen=True, slots=True)
class TrainerSettings:
    command: tuple[str, ...]
    env: Mapping[str, str]
    default_runner: str = "local"
    stop_grace_s: float = 3.0
    max_log_events: int = 2000
    """Output lines logged as events per attempt; the rest go to the log file only."""


class _Attempt:
    def __init__(self, hold: Hold, run: Run, tracker: ProgressTracker, log: TextIO, max_log_events: int) -> None:
        self.hold, self.run, self.tracker, self.log = hold, run, tracker, log
        self.pending: list[JobEvent] = []
        self.tail: deque[str] = deque(maxlen=8)
        self.pause_ready = False
        self._logged = 0
        self._max_logged = max_log_events
        self._writer: asyncio.Task[None] | None = None

    async def pump(self) -> None:
        async for line in self.run.lines():
            self.log.write(line + "\n")
            record = parse_line(line)
            if record is None:
                self.tail.append(line)
                self._log_event(line)
            else:
                events = self.tracker.apply(record)
                self.pending.extend(events)
                if any(e.type is EventType.CHECKPOINT for e in events) and self.hold.controls.pause:
                    self.pause_ready = True
                    self.hold.poke()
            self._kick()
        self.log.flush()
        await self.drain()

    def _log_event(self, line: str) -> None:
        self._logged += 1
        t = self.tracker
        if self._logged <= self._max_logged:
            self.pending.append(JobEvent(EventType.LOG, t.state, line[:4000], t.progress))
        elif self._logged == self._max_logged + 1:
            note = f"further output is only in {t.status.get('artifacts', {}).get('log_path', 'the log file')}"
            self.pending.append(JobEvent(EventType.LOG, t.state, note, t.progress))

    def _kick(self) -> None:
        if self.pending and (self._writer is None or self._writer.done()):
            self._writer = asyncio.create_task(self._write())

    async def drain(self) -> None:
        while (self._writer is not None and not self._writer.done()) or self.pending:
            if self._writer is None or self._writer.done():
                self._kick()
            assert self._writer is not None
            await asyncio.wait([self._writer])
            if self.hold.lost:
                return

    async def _write(self) -> None:
        t = self.tracker
        try:
            while self.pending and not self.hold.lost:
                batch, self.pending = self.pending, []
                await self.hold.leases.record(
                    self.hold.claim, batch, state=t.state, progress=t.progress, message=t.message or None,
                    status=t.status,
                )  # fmt: skip
        except LeaseLost:
            self.hold.lose()


class TrainingExecutor:
    def __init__(
        self,
        workspace: Workspace,
        runners: Mapping[str, Runner],
        settings: TrainerSettings,
        on_completed: Callable[[Claim], Awaitable[None]] | None = None,
    ) -> None:
        self._workspace = workspace
        self._runners = runners
        self._settings = settings
        self._on_completed = on_completed

    async def __call__(self, hold: Hold) -> None:
        claim, leases = hold.claim, hold.leases
        job = claim.job
        tracker = ProgressTracker(JobState.PREPARING, status=dict(job.status), progress=job.progress)

        async def fail(reason: str, message: str, metadata: dict[str, str] | None = None, code: int = 9) -> None:
            failure = Failure(reason, message, code, metadata or {})
            error = JobEvent(EventType.ERROR, JobState.FAILED, message, tracker.progress)
            await leases.finish(claim, JobState.FAILED, [error], message=message, error=failure, status=tracker.status)

        try:
            prepared = await self._workspace.prepare(job.id, claim.attempt, job.kind, job.spec, claim.resume_from)
        except DatasetError as exc:
            await fail("DATASET_INVALID", f"bad dataset: {exc}", {"line": str(exc.line)} if exc.line else {}, 3)
            return
        except OSError as exc:
            await fail("WORKSPACE_UNAVAILABLE", f"cannot write the job directory: {exc}")
            return
        artifacts = tracker.status.setdefault("artifacts", {})
        artifacts.update(output_dir=str(prepared.output_dir), log_path=str(prepared.log_path))
        name = str(job.spec.get("runner") or self._settings.default_runner)
        runner = self._runners.get(name)
        if runner is None:
            await fail("RUNNER_UNAVAILABLE", f"runner {name!r} is not configured on this server")
            return
        note = f"dataset: {prepared.train_examples} training and {prepared.eval_examples} held-out examples"
        await leases.record(claim, [JobEvent(EventType.LOG, JobState.PREPARING, note)], status=tracker.status)
        if hold.controls.cancel or hold.shutdown or hold.lost:
            await self._end(hold, tracker, None, None)
            return
        try:
            run = await runner.submit(self._spec(hold, prepared))
        except RunnerError as exc:
            await fail("RUNNER_FAILED", str(exc))
            return
        log = Workspace.open_log(prepared, claim.attempt)
        try:
            attempt = _Attempt(hold, run, tracker, log, self._settings.max_log_events)
            with contextlib.suppress(LeaseLost):
                await leases.record(claim, [], runner_ref=run.ref)
            await self._follow(hold, attempt)
        finally:
            log.close()
        await self._end(hold, tracker, attempt, await run.wait())

    def _spec(self, hold: Hold, prepared: PreparedJob) -> RunSpec:
        claim = hold.claim
        env = {
            **self._settings.env,
            "FORGE_JOB_ID": claim.id,
            "FORGE_JOB_SPEC": str(prepared.spec_path),
            "FORGE_JOB_DIR": str(prepared.job_dir),
            "FORGE_OUTPUT_DIR": str(prepared.output_dir),
            "FORGE_CHECKPOINT_DIR": str(prepared.checkpoint_dir),
            "FORGE_RESUME_FROM": claim.resume_from,
            "FORGE_ATTEMPT": str(claim.attempt),
            "PYTHONUNBUFFERED": "1",  # records must arrive as they are printed, not when a buffer fills
        }
        return RunSpec(
            claim.id, claim.attempt, (*self._settings.command, str(prepared.spec_path)), env, prepared.job_dir
        )

    async def _follow(self, hold: Hold, attempt: _Attempt) -> None:
        """Pumps output until the trainer ends, stopping it when the user, forge or the lease say so."""
        pump = asyncio.create_task(attempt.pump())
        stopping = False
        try:
            while not pump.done():
                changed = asyncio.create_task(hold.changed())
                await asyncio.wait([pump, changed], return_when=asyncio.FIRST_COMPLETED)
                changed.cancel()
                wanted = hold.lost or hold.controls.cancel or hold.shutdown or attempt.pause_ready
                if wanted and not stopping:
                    stopping = True
                    await attempt.run.stop(self._settings.stop_grace_s)
            await pump
        finally:
            if not pump.done():
                pump.cancel()
                await attempt.run.stop(0)
                await asyncio.wait([pump])

    async def _end(self, hold: Hold, tracker: ProgressTracker, attempt: _Attempt | None, ended: RunExit | None) -> None:
        if hold.lost:
            return
        claim, leases, s = hold.claim, hold.leases, tracker.status
        checkpoint = s.get("artifacts", {}).get("checkpoint_path", "")
        if hold.controls.cancel:
            await leases.finish(claim, JobState.CANCELLED, [], message="cancelled: the trainer was stopped", status=s)
        elif hold.shutdown:
            where = f"; resumes from {checkpoint}" if checkpoint else ""
            await leases.finish(
                claim, JobState.QUEUED, [], message=f"released: forge stopped{where}", status=s, released=True
            )
        elif attempt is not None and attempt.pause_ready:
            await leases.finish(
                claim, JobState.PAUSED, [], message=f"paused at checkpoint {checkpoint}", status=s, released=True
            )
        elif ended is not None and ended.code == 0 and not tracker.error:
            await leases.finish(claim, JobState.COMPLETED, [], message="completed", progress=100.0, status=s)
            if self._on_completed is not None:
                # After COMPLETED is recorded: what runs now (a deploy) cannot change how the job ended.
                await self._on_completed(claim)
        else:
            detail = ended.detail if ended is not None else "did not start"
            last = " | ".join(attempt.tail) if attempt is not None else ""
            message = tracker.error or f"the trainer {detail}" + (f"; last output: {last}" if last else "")
            failure = Failure("TRAINER_FAILED", message, 9, {"exit_code": str(ended.code)} if ended else {})
            error = JobEvent(EventType.ERROR, JobState.FAILED, message, tracker.progress)
            await leases.finish(claim, JobState.FAILED, [error], message=message, error=failure, status=s)
