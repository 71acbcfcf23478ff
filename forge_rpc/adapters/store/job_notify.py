"""`JobSignals`: one LISTEN connection per process that wakes watchers and idle workers when the queue changes.

PostgreSQL delivers a NOTIFY to every listening session when the writing transaction commits, on every replica,
with or without Redis — so a watcher on replica A hears of progress written by a worker on replica B. A
notification only says "look again": readers always re-read the rows, so a lost one (the connection dropped)
costs at most the fallback poll interval the readers wait with.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict

import psycopg

from .job_store import JOBS_CHANNEL, QUEUED_CHANNEL

__all__ = ["JobSignals", "Subscription"]

log = logging.getLogger("forge.jobs.signals")


class Subscription:
    """A watcher's doorbell for one key. Call `arm()` before reading, then `wait()`: a change committed after
    `arm()` is never missed."""

    __slots__ = ("_event", "_key", "_signals")

    def __init__(self, signals: JobSignals, key: str) -> None:
        self._signals, self._key = signals, key
        self._event = asyncio.Event()

    def arm(self) -> None:
        self._event.clear()

    async def wait(self, timeout: float) -> None:
        # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancel that lands as the event fires,
        # and the worker's loop then never ends at shutdown.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await self._event.wait()

    def ring(self) -> None:
        self._event.set()

    def close(self) -> None:
        self._signals._drop(self._key, self)


class JobSignals:
    def __init__(self) -> None:
        self._subs: dict[str, set[Subscription]] = defaultdict(set)
        self._task: asyncio.Task[None] | None = None
        self._conninfo = ""

    def subscribe_job(self, job_id: str) -> Subscription:
        return self._add(f"job:{job_id}")

    def subscribe_lane(self, lane: str) -> Subscription:
        return self._add(f"lane:{lane}")

    def ring_lane(self, lane: str) -> None:
        """Wakes this process's idle workers of a lane (a slot came free)."""
        self._ring(f"lane:{lane}")

    def _add(self, key: str) -> Subscription:
        sub = Subscription(self, key)
        self._subs[key].add(sub)
        return sub

    def _drop(self, key: str, sub: Subscription) -> None:
        subs = self._subs.get(key)
        if subs is not None:
            subs.discard(sub)
            if not subs:
                del self._subs[key]

    def _ring(self, key: str) -> None:
        for sub in list(self._subs.get(key, ())):
            sub.ring()

    def _ring_all(self) -> None:
        for subs in list(self._subs.values()):
            for sub in list(subs):
                sub.ring()

    async def start(self, conninfo: str) -> None:
        self._conninfo = conninfo
        self._task = asyncio.create_task(self._listen(), name="job-signals")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _listen(self) -> None:
        backoff = 0.2
        while True:
            try:
                async with await psycopg.AsyncConnection.connect(
                    self._conninfo, autocommit=True, application_name="forge-job-signals"
                ) as conn:
                    await conn.execute(f"LISTEN {JOBS_CHANNEL}")
                    await conn.execute(f"LISTEN {QUEUED_CHANNEL}")
                    backoff = 0.2
                    # Anything committed while we were not listening: everyone looks again.
                    self._ring_all()
                    async for note in conn.notifies():
                        if note.channel == JOBS_CHANNEL:
                            self._ring(f"job:{note.payload}")
                        else:
                            self._ring(f"lane:{note.payload}")
            except psycopg.Error as exc:
                log.warning("job signals connection lost (%s); retrying in %.1fs", exc, backoff)
                self._ring_all()
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
