"""Request recording: what each client sent and when the fake saw it end.

The records exist so tests can assert *cancellation latency*: ``started`` and
``ended`` are ``time.monotonic()`` readings, and CLOCK_MONOTONIC is
system-wide on Linux, so a test process can subtract its own monotonic
timestamps from them directly.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

# Only headers tests plausibly assert on; recording all of them would leak
# whatever the client stack adds and make records noisy.
RECORDED_HEADERS: Final = ("authorization", "x-api-key", "x-request-id", "user-agent")


@dataclass(slots=True)
class RequestRecord:
    """One wire request; mutated in place by the handler while it runs."""

    id: int
    method: str
    path: str
    started: float
    headers: dict[str, str]
    model: str | None = None
    tag: str | None = None
    stream: bool = False
    ended: float | None = None
    client_closed_early: bool = False
    tokens_sent: int = 0
    status: int = 0
    body: Any = None
    #: The client's TCP port: equal ports on two requests mean a reused (pooled) connection.
    peer_port: int = 0

    def to_json(self) -> dict[str, Any]:
        # Explicit dict instead of dataclasses.asdict: asdict deep-copies the
        # request body on every poll, which adds up in benchmarks.
        return {
            "id": self.id,
            "path": self.path,
            "method": self.method,
            "model": self.model,
            "tag": self.tag,
            "stream": self.stream,
            "started": self.started,
            "ended": self.ended,
            "client_closed_early": self.client_closed_early,
            "tokens_sent": self.tokens_sent,
            "status": self.status,
            "body": self.body,
            "headers": self.headers,
            "peer_port": self.peer_port,
        }


class Recorder:
    """All records of the process, plus a change signal for long-polls."""

    def __init__(self) -> None:
        self._records: list[RequestRecord] = []
        self._next_id = 1
        self._changed = asyncio.Event()
        # Upstream pulls per normalised model name: lets a test assert that
        # two concurrent forge pulls were coalesced into one upstream pull.
        self.pulls: Counter[str] = Counter()

    def open(self, method: str, path: str, headers: Mapping[str, str]) -> RequestRecord:
        picked = {h: headers[h] for h in RECORDED_HEADERS if h in headers}
        rec = RequestRecord(
            id=self._next_id,
            method=method,
            path=path,
            started=time.monotonic(),
            headers=picked,
        )
        self._next_id += 1
        self._records.append(rec)
        return rec

    def close(self, rec: RequestRecord, *, status: int | None, client_closed_early: bool) -> None:
        """Mark ``rec`` ended; only the first call counts.

        Idempotent because a request can be seen ending twice (a failed write
        followed by the handler-cancellation aiohttp sends on connection loss)
        and the first observation is the one with the honest timestamp.
        """
        if rec.ended is not None:
            return
        rec.ended = time.monotonic()
        rec.client_closed_early = client_closed_early
        if status is not None and not rec.status:
            rec.status = status
        # Swap the event so waiters wake once and re-check; a fresh event for
        # later waiters avoids a set/clear race.
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    def matching(self, tag: str | None) -> list[RequestRecord]:
        if tag is None:
            return list(self._records)
        return [r for r in self._records if r.tag == tag]

    async def wait_ended(self, tag: str, wait_s: float) -> list[RequestRecord] | None:
        """Records with ``tag`` once at least one has ended, or None after ``wait_s``."""
        deadline = time.monotonic() + wait_s
        while True:
            recs = self.matching(tag)
            if any(r.ended is not None for r in recs):
                return recs
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            try:
                await asyncio.wait_for(self._changed.wait(), remaining)
            except TimeoutError:
                return None

    def reset(self) -> None:
        # Keep ids increasing across resets so a stale id never aliases a
        # new request in a test's bookkeeping.
        self._records.clear()
        self.pulls.clear()
