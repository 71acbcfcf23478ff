"""The hub: one upstream stream per (topic, params) per process, fanned out to every subscriber.

The first subscriber starts the stream's reader task; the last one to leave cancels it. The reader only hands
items to sinks (`Sink.offer` never blocks), so no subscriber can slow the stream or another subscriber; pacing
to a socket is the socket's own business (outbox.py).

The interface is three calls, `subscribe`, `unsubscribe` and `publish`, so that fan-out across replicas (Redis
pub/sub, ARCHITECTURE.md §6) can replace `publish`'s local delivery without touching the sockets.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator, Callable
from contextlib import aclosing
from dataclasses import dataclass, field
from typing import Final, Protocol

from ..errors import error_reason
from ..invoke import InvokeError
from .topics import StreamKey

__all__ = ["COMPLETE", "Complete", "Event", "Failure", "Hub", "Item", "Sink", "Source"]

log = logging.getLogger("forge.ws")


@dataclass(frozen=True, slots=True)
class Event:
    data: bytes
    """The JSON of one response message."""


@dataclass(frozen=True, slots=True)
class Complete:
    """The stream ended normally."""


@dataclass(frozen=True, slots=True)
class Failure:
    """The stream ended with an error: `code` is the error reason ("UNIMPLEMENTED", "MODEL_NOT_FOUND"…)."""

    detail: str
    code: str


COMPLETE: Final = Complete()
Item = Event | Complete | Failure
Source = Callable[[], AsyncGenerator[bytes, None]]
"""Opens the upstream stream; called once per running stream, by the first subscriber's request."""


class Sink(Protocol):
    def offer(self, item: Item) -> None:
        """Takes an item without waiting; may drop older events, never a Complete or Failure."""
        ...


@dataclass(eq=False, slots=True)
class _Stream:
    sinks: set[Sink] = field(default_factory=set)
    last: Event | None = None
    """Handed to late joiners at once: pull progress and metrics are snapshots, the newest is what matters."""
    task: asyncio.Task[None] | None = None


class Hub:
    def __init__(self) -> None:
        self._streams: dict[StreamKey, _Stream] = {}
        # Every reader task ever started and not yet finished, so close() can cancel and await them all.
        self._tasks: set[asyncio.Task[None]] = set()

    def __len__(self) -> int:
        """Upstream streams running now."""
        return len(self._streams)

    async def subscribe(self, key: StreamKey, sink: Sink, source: Source) -> None:
        """Joins the stream under `key`, starting it with `source()` if none runs."""
        stream = self._streams.get(key)
        if stream is None:
            stream = self._streams[key] = _Stream()
            stream.task = asyncio.create_task(self._read(key, stream, source), name=f"ws-upstream:{key[0]}")
            self._tasks.add(stream.task)
            stream.task.add_done_callback(self._tasks.discard)
        elif stream.last is not None:
            sink.offer(stream.last)
        stream.sinks.add(sink)

    async def unsubscribe(self, key: StreamKey, sink: Sink) -> None:
        """Leaves the stream; the last subscriber out cancels it and waits until the upstream call is closed.
        A no-op for a stream that already ended."""
        stream = self._streams.get(key)
        if stream is None or sink not in stream.sinks:
            return
        stream.sinks.discard(sink)
        if stream.sinks:
            return
        del self._streams[key]
        if stream.task is not None:
            stream.task.cancel()
            # wait() neither raises the task's CancelledError nor hides our own, should we be cancelled meanwhile.
            await asyncio.wait({stream.task})

    def publish(self, key: StreamKey, item: Item) -> None:
        """Delivers an item to every subscriber of `key`; a Complete or Failure ends the stream, so the next
        subscriber starts a fresh one."""
        stream = self._streams.get(key)
        if stream is None:
            return
        if isinstance(item, Event):
            stream.last = item
        else:
            del self._streams[key]
        for sink in tuple(stream.sinks):
            sink.offer(item)

    async def close(self) -> None:
        """Cancels every upstream stream and waits for them (app shutdown)."""
        self._streams.clear()
        tasks = set(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks)

    async def _read(self, key: StreamKey, stream: _Stream, source: Source) -> None:
        end: Item
        try:
            async with aclosing(source()) as events:
                async for data in events:
                    self._emit(key, stream, Event(data))
        except InvokeError as err:
            end = Failure(err.message, error_reason(err))
        except Exception as exc:
            # Subscribers must still hear that their stream is over; the cause goes to the log, not the wire.
            log.error("/ws upstream %s failed", key[0], exc_info=exc)
            end = Failure(f"internal error in the {key[0]} stream", "INTERNAL")
        else:
            end = COMPLETE
        self._emit(key, stream, end)

    def _emit(self, key: StreamKey, stream: _Stream, item: Item) -> None:
        # Only the stream still registered under `key` may publish: one whose last subscriber left may be winding
        # down while a new subscriber already started its successor under the same key.
        if self._streams.get(key) is stream:
            self.publish(key, item)
