"""PullHub: callers pulling the same model share one download and see the same progress."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

from .ports import PullUpdate

__all__ = ["PullHub"]


@dataclass(slots=True)
class _Pull:
    updates: list[PullUpdate] = field(default_factory=list)
    changed: asyncio.Condition = field(default_factory=asyncio.Condition)
    done: bool = False
    error: BaseException | None = None
    subscribers: int = 0
    task: asyncio.Task[None] | None = None


class PullHub:
    def __init__(self) -> None:
        self._pulls: dict[str, _Pull] = {}

    def running(self, key: str) -> bool:
        return key in self._pulls

    async def follow(self, key: str, start: Callable[[], AsyncIterator[PullUpdate]]) -> AsyncIterator[PullUpdate]:
        """Joins the pull under `key`, starting it with `start()` if none runs. The download is cancelled when
        its last follower leaves, as a single caller interrupting `ollama pull` would expect."""
        pull = self._pulls.get(key)
        if pull is None:
            pull = self._pulls[key] = _Pull()
            pull.task = asyncio.create_task(self._run(key, pull, start()), name=f"pull:{key}")
        pull.subscribers += 1
        seen = 0
        try:
            while True:
                async with pull.changed:
                    await pull.changed.wait_for(_more_than(pull, seen))
                    fresh = pull.updates[seen:]
                    seen = len(pull.updates)
                    finished, error = pull.done, pull.error
                for update in fresh:
                    yield update
                if finished and seen == len(pull.updates):
                    if error is not None:
                        raise error
                    return
        finally:
            pull.subscribers -= 1
            if pull.subscribers == 0 and not pull.done and pull.task is not None:
                pull.task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await pull.task

    async def _run(self, key: str, pull: _Pull, source: AsyncIterator[PullUpdate]) -> None:
        try:
            async for update in source:
                async with pull.changed:
                    pull.updates.append(update)
                    pull.changed.notify_all()
        except asyncio.CancelledError:
            pull.error = asyncio.CancelledError()
            raise
        except Exception as exc:  # handed to every follower, which re-raises it in its own call
            pull.error = exc
        finally:
            self._pulls.pop(key, None)
            async with pull.changed:
                pull.done = True
                pull.changed.notify_all()


def _more_than(pull: _Pull, seen: int) -> Callable[[], bool]:
    return lambda: len(pull.updates) > seen or pull.done
