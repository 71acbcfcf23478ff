"""Following a row's event log live: read what is new, wait for the NOTIFY that says more committed, repeat until
the row is finished and every event up to its last one was delivered."""

from __future__ import annotations

from collections.abc import AsyncIterator

from ..adapters.store.job_notify import JobSignals
from ..adapters.store.job_store import JobStore
from ..domain import NotFound
from ..domain.jobs import JobEvent, JobSnapshot

__all__ = ["follow"]

_BATCH = 500


async def follow(
    store: JobStore, signals: JobSignals, job_id: str, after_seq: int, poll_s: float
) -> AsyncIterator[tuple[JobSnapshot, list[JobEvent]]]:
    """Batches of events after `after_seq`, each with the row as it was read right after them. `poll_s` bounds the
    wait when a notification is lost (the listening connection dropped)."""
    bell = signals.subscribe_job(job_id)
    try:
        while True:
            bell.arm()
            events = await store.events(job_id, after_seq, _BATCH)
            job = await store.get(job_id)
            if job is None:
                raise NotFound("job", job_id)
            if events:
                after_seq = events[-1].seq
                yield job, events
            if job.done and after_seq >= job.last_event_seq:
                return
            if len(events) < _BATCH:
                await bell.wait(poll_s)
    finally:
        bell.close()
