"""The model repository's read cache: every `model_preferences` row in memory, so ListModels and GetModel merge
preferences without a database round trip. It is also what hands the stored default to the provider directory
(the model a request that names none is routed to).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Final

import psycopg
from psycopg_pool import PoolTimeout

from .model_repository import ModelRepositoryStore, RepositoryRow

__all__ = ["REFRESH_S", "PreferenceCache", "PreferenceSnapshot"]

log = logging.getLogger("forge.store.model_preferences")


@dataclass(frozen=True, slots=True)
class PreferenceSnapshot:
    rows: Mapping[str, RepositoryRow] = field(default_factory=dict)

    @property
    def default(self) -> str | None:
        """The stored default while some provider has it; a vanished default leaves the configured one in charge."""
        return next((r.name for r in self.rows.values() if r.is_default and r.available), None)


# How stale another replica's write may look here. This replica reloads right after its own writes; the
# background reload only catches writes made elsewhere, and one small SELECT every few seconds is free.
REFRESH_S: Final = 5.0

_UNSET: Final = object()


class PreferenceCache:
    """Every repository row in memory; `current()` never touches the database.

    `apply_default` receives the effective default whenever it changes (at start, after a write here, or when
    a reload sees another replica's write), so the provider directory routes model-less requests to it.
    """

    def __init__(
        self,
        store: ModelRepositoryStore,
        apply_default: Callable[[str | None], None],
        refresh_s: float = REFRESH_S,
    ) -> None:
        self._store = store
        self._apply_default = apply_default
        self._refresh_s = refresh_s
        self._snapshot = PreferenceSnapshot()
        self._applied: object = _UNSET
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None

    def current(self) -> PreferenceSnapshot:
        return self._snapshot

    async def reload(self) -> PreferenceSnapshot:
        # One reload at a time, so a slow reload that began before a write can never finish after the reload
        # that follows the write and put the older view back.
        async with self._lock:
            rows = await self._store.all()
            self._snapshot = PreferenceSnapshot({r.name: r for r in rows})
            default = self._snapshot.default
            if default != self._applied:
                self._applied = default
                self._apply_default(default)
            return self._snapshot

    async def start(self) -> None:
        await self.reload()
        self._task = asyncio.create_task(self._reload_forever(), name="model-preferences-reload")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _reload_forever(self) -> None:
        while True:
            await asyncio.sleep(self._refresh_s)
            try:
                await self.reload()
            except (psycopg.Error, PoolTimeout) as exc:  # keep serving the last view; the next round retries
                log.warning("reloading model preferences failed: %s", exc)
