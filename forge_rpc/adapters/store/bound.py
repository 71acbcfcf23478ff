"""`BoundStore`: a store whose pool is bound once storage has started (the servicers are built before it)."""

from __future__ import annotations

from typing import Any, ClassVar

from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

from ...domain import FailedPrecondition

__all__ = ["BoundStore", "Pool"]

Pool = AsyncConnectionPool[AsyncConnection[Any]]


class BoundStore:
    what: ClassVar[str] = "storage"
    """Named in the error a call gets before storage has started."""

    def __init__(self, pool: Pool | None = None) -> None:
        self._bound = pool

    def bind(self, pool: Pool) -> None:
        self._bound = pool

    @property
    def _pool(self) -> Pool:
        if self._bound is None:
            raise FailedPrecondition(f"{self.what} is not started yet", "STORAGE_NOT_READY")
        return self._bound
