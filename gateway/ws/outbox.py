"""A socket's outgoing side: one mailbox per subscription and one writer task that drains them.

Each mailbox holds at most `capacity` events and drops the oldest when full (latest wins: progress and metrics
are snapshots), while its Complete or Failure is kept apart and never dropped. The hub only fills mailboxes; the
writer is the one place that waits on the socket, so a peer that stops reading stalls its own writer and nothing
else, and once it reads again it gets the newest snapshots rather than a backlog.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from typing import Final

from aiohttp import WSMsgType, web

from .hub import Complete, Event, Failure, Item
from .protocol import complete_frame, error_frame, event_frame

__all__ = ["CONTROL_BACKLOG", "Mailbox", "Outbox"]

CONTROL_BACKLOG: Final = 64
"""Pongs and frame-level errors waiting to go out. Only a client that sends frames faster than it reads can fill
it, and it then loses its own oldest pongs, never a subscription's end."""


class Mailbox:
    """One subscription on one socket; the hub's Sink."""

    __slots__ = ("_end", "_events", "_on_end", "_outbox", "dropped", "id", "open")

    def __init__(self, sub_id: str, outbox: Outbox, capacity: int, on_end: Callable[[Mailbox], None]) -> None:
        self.id = sub_id
        self.open = True
        self.dropped = 0
        """Events replaced by newer ones before the socket took them."""
        self._outbox = outbox
        self._events: deque[bytes] = deque(maxlen=capacity)
        self._end: Complete | Failure | None = None
        self._on_end = on_end

    def offer(self, item: Item) -> None:
        if not self.open or self._end is not None:
            return
        if isinstance(item, Event):
            if len(self._events) == self._events.maxlen:
                self.dropped += 1
            self._events.append(item.data)
        else:
            self._end = item
            # The client may reuse the id as soon as it has read the end, so it is released now, not once sent.
            self._on_end(self)
        self._outbox.ready(self)

    def close(self) -> None:
        """Unsubscribed: nothing more goes out under this id, not even what is already buffered."""
        self.open = False
        self._events.clear()
        self._end = None
        self._outbox.forget(self)

    def pending(self) -> bool:
        return bool(self._events) or self._end is not None

    def next_frame(self) -> bytes | None:
        if self._events:
            return event_frame(self.id, self._events.popleft())
        end, self._end = self._end, None
        if end is None:
            return None
        self.open = False
        if isinstance(end, Complete):
            return complete_frame(self.id)
        return error_frame(self.id, end.detail, end.code)


class Outbox:
    def __init__(self, ws: web.WebSocketResponse) -> None:
        self._ws = ws
        self._control: deque[bytes] = deque(maxlen=CONTROL_BACKLOG)
        # Mailboxes with something to send, in arrival order; a dict is the ordered set.
        self._ready: dict[Mailbox, None] = {}
        self._wake = asyncio.Event()

    def send(self, frame: bytes) -> None:
        """Queues a control frame (pong, frame-level error); they go out ahead of events."""
        self._control.append(frame)
        self._wake.set()

    def ready(self, mailbox: Mailbox) -> None:
        self._ready[mailbox] = None
        self._wake.set()

    def forget(self, mailbox: Mailbox) -> None:
        self._ready.pop(mailbox, None)

    async def run(self) -> None:
        """The socket's writer task: runs until cancelled or the peer is gone."""
        try:
            while True:
                await self._wake.wait()
                self._wake.clear()
                while (frame := self._next()) is not None:
                    await self._ws.send_frame(frame, WSMsgType.TEXT)
        except ConnectionResetError:
            return  # the peer left; the socket's read loop sees the close as well and cleans up

    def _next(self) -> bytes | None:
        if self._control:
            return self._control.popleft()
        while self._ready:
            mailbox = next(iter(self._ready))
            del self._ready[mailbox]
            frame = mailbox.next_frame()
            if frame is None:
                continue
            if mailbox.pending():
                # Round robin: a busy subscription goes to the back so it cannot starve the socket's others.
                self._ready[mailbox] = None
            return frame
        return None
