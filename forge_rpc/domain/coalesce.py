"""Merging text deltas that pile up while the reader is busy, for providers whose client yields one object per
chunk (Ollama's client, litellm). The OpenAI-compatible adapter merges natively from its socket buffer and does
not need this.

A read-ahead task pulls from the provider while the consumer writes; whatever text arrived meanwhile is handed
over as one delta. Nothing is held back on a timer: when the consumer is ready and something is waiting, it gets
it at once. The buffer is bounded, so a stalled consumer still back-pressures the provider.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import AsyncIterator

from .chat import ProviderEvent, TextDelta

__all__ = ["coalesce"]

MAX_PENDING_EVENTS = 64
MAX_PENDING_CHARS = 64 * 1024


async def coalesce(source: AsyncIterator[ProviderEvent]) -> AsyncIterator[ProviderEvent]:
    pending: deque[ProviderEvent] = deque()
    chars = 0
    ready = asyncio.Event()
    room = asyncio.Event()
    room.set()
    finished = False
    failure: BaseException | None = None

    async def pump() -> None:
        nonlocal chars, finished, failure
        try:
            async for event in source:
                await room.wait()
                last = pending[-1] if pending else None
                if isinstance(event, TextDelta) and isinstance(last, TextDelta):
                    last.text += event.text
                    last.chunks += event.chunks
                else:
                    pending.append(event)
                if isinstance(event, TextDelta):
                    chars += len(event.text)
                if len(pending) >= MAX_PENDING_EVENTS or chars >= MAX_PENDING_CHARS:
                    room.clear()
                ready.set()
        except Exception as exc:  # handed to the consumer, which raises it in its own task
            failure = exc
        finally:
            finished = True
            ready.set()

    task = asyncio.create_task(pump())
    try:
        while True:
            await ready.wait()
            while pending:
                event = pending.popleft()
                if isinstance(event, TextDelta):
                    chars -= len(event.text)
                room.set()
                yield event
            ready.clear()
            if finished and not pending:
                if failure is not None:
                    raise failure
                return
    finally:
        if not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
