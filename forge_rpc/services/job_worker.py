"""`JobWorker`: this replica's share of the durable queue. Per lane it claims rows while it has free slots (woken by
NOTIFY when something is queued, else by a slow poll), keeps each claim's lease alive, tells the executor what
users asked (cancel, pause) and when the lease is gone, and reaps rows whose worker died.

Executors (training_run.py, task_execution.py) receive a `Hold` and must end it with `leases.finish()`; a
stop hands every running row back (QUEUED, not counted as a lost attempt), so a restart loses no job.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

import psycopg
from psycopg_pool import PoolTimeout

from ..adapters.store.job_leases import Claim, Controls, JobLeases, LeaseLost
from ..adapters.store.job_notify import JobSignals
from ..domain.jobs import Failure, JobState, Lane

__all__ = ["Executor", "Hold", "JobWorker", "LaneConfig"]

log = logging.getLogger("forge.jobs.worker")

_DB_ERRORS = (psycopg.Error, PoolTimeout, OSError)


class Hold:
    """A claimed row while its executor works on it: what users asked, and whether the worker must let go."""

    def __init__(self, claim: Claim, leases: JobLeases) -> None:
        self.claim = claim
        self.leases = leases
        self.controls = Controls(cancel=False, pause=claim.job.pause_requested)
        self.shutdown = False
        """forge is stopping: hand the row back."""
        self.lost = False
        """The lease is gone: stop at once and write nothing."""
        self._changed = asyncio.Event()

    def update(self, controls: Controls) -> None:
        if controls != self.controls:
            self.controls = controls
            self._changed.set()

    def release(self) -> None:
        self.shutdown = True
        self._changed.set()

    def lose(self) -> None:
        self.lost = True
        self._changed.set()

    def poke(self) -> None:
        """Something the executor itself watches for changed (e.g. a checkpoint arrived)."""
        self._changed.set()

    async def changed(self) -> None:
        await self._changed.wait()
        self._changed.clear()


Executor = Callable[[Hold], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class LaneConfig:
    concurrency: int
    execute: Executor


class JobWorker:
    def __init__(
        self,
        leases: JobLeases,
        signals: JobSignals,
        lanes: Mapping[Lane, LaneConfig],
        *,
        poll_s: float = 2.0,
        control_poll_s: float = 0.5,
    ) -> None:
        self._leases = leases
        self._signals = signals
        self._lanes = lanes
        self._poll_s = poll_s
        self._control_poll_s = control_poll_s
        self._holds: dict[Lane, dict[str, tuple[Hold, asyncio.Task[None]]]] = {lane: {} for lane in lanes}
        self._loops: list[asyncio.Task[None]] = []
        self._stopping = False

    @property
    def running(self) -> int:
        return sum(len(h) for h in self._holds.values())

    async def start(self) -> None:
        self._loops = [
            asyncio.create_task(self._lane(lane, cfg), name=f"jobs:{lane}") for lane, cfg in self._lanes.items()
        ]
        self._loops.append(asyncio.create_task(self._reaper(), name="jobs:reaper"))

    async def stop(self) -> None:
        """Stops claiming, then hands every running row back and waits for its executor to let go."""
        self._stopping = True
        for task in self._loops:
            task.cancel()
        for task in self._loops:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        running = [(hold, task) for holds in self._holds.values() for hold, task in holds.values()]
        for hold, _ in running:
            hold.release()
        if running:
            await asyncio.wait([task for _, task in running])

    async def _lane(self, lane: Lane, cfg: LaneConfig) -> None:
        wake = self._signals.subscribe_lane(lane.value)
        try:
            while True:
                wake.arm()
                try:
                    while len(self._holds[lane]) < cfg.concurrency:
                        claim = await self._leases.claim(lane)
                        if claim is None:
                            break
                        self._begin(lane, cfg, claim)
                except _DB_ERRORS as exc:
                    log.warning("claiming from the %s lane failed: %s", lane, exc)
                # A cancel landing inside a query can surface as a driver error (QueryCanceled) and be
                # swallowed above: the stop flag, set before the cancel, ends the loop either way.
                if self._stopping:
                    return
                await wake.wait(self._poll_s)
        finally:
            wake.close()

    async def _reaper(self) -> None:
        # Any replica may reap any row: whoever finds an expired lease first handles it (SKIP LOCKED).
        while not self._stopping:
            try:
                await self._leases.reap()
            except _DB_ERRORS as exc:
                log.warning("reaping expired leases failed: %s", exc)
            await asyncio.sleep(min(self._poll_s, self._leases.lease_s / 2))

    def _begin(self, lane: Lane, cfg: LaneConfig, claim: Claim) -> None:
        hold = Hold(claim, self._leases)
        task = asyncio.create_task(self._attempt(lane, hold, cfg.execute), name=f"job:{claim.id}")
        self._holds[lane][claim.id] = (hold, task)
        log.info("claimed %s (%s, attempt %d)", claim.id, claim.job.kind, claim.attempt)

    async def _attempt(self, lane: Lane, hold: Hold, execute: Executor) -> None:
        beat = asyncio.create_task(self._heartbeat(hold), name=f"lease:{hold.claim.id}")
        try:
            await execute(hold)
        except LeaseLost:
            log.warning("%s: lost its lease; another worker may take it over", hold.claim.id)
        except Exception as exc:
            log.exception("%s: the executor failed", hold.claim.id)
            failure = Failure("INTERNAL", f"forge failed running the job: {exc}", 13)
            with contextlib.suppress(LeaseLost, *_DB_ERRORS):
                await hold.leases.finish(hold.claim, JobState.FAILED, [], message=failure.message, error=failure)
        finally:
            beat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await beat
            self._holds[lane].pop(hold.claim.id, None)
            if not self._stopping:
                self._signals.ring_lane(lane.value)  # a slot is free

    async def _heartbeat(self, hold: Hold) -> None:
        """Renews the lease every third of its length, and looks at the row's controls at most every
        `control_poll_s` whenever its events change (a user's cancel or pause is an event)."""
        leases = self._leases
        bell = self._signals.subscribe_job(hold.claim.id)
        renewed = time.monotonic()
        try:
            while not hold.lost:
                bell.arm()
                await bell.wait(leases.lease_s / 3)
                try:
                    hold.update(await leases.heartbeat(hold.claim))
                    renewed = time.monotonic()
                except LeaseLost:
                    hold.lose()
                except _DB_ERRORS as exc:
                    # Unreachable database: once the lease has surely run out, another replica may have taken
                    # the row, so this one must stop its copy of the work.
                    if time.monotonic() - renewed > leases.lease_s * 0.9:
                        log.error("%s: cannot renew the lease (%s); giving the job up", hold.claim.id, exc)
                        hold.lose()
                await asyncio.sleep(self._control_poll_s)
        finally:
            bell.close()
