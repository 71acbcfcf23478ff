"""RuleBook: every routing rule in memory, so matching a request never reads the database.

The table is small (rules are written by people), so it is re-read whole: after each write made here, and
every `refresh_every_s` seconds (the routing component's refresh loop) to see writes made by other replicas.
"""

from __future__ import annotations

import asyncio
import time

from ..adapters.store.routing_store import RoutingStore
from ..domain.routing_rules import RouteQuery, RoutingRule, RuleSet

__all__ = ["RuleBook"]


class RuleBook:
    def __init__(self, store: RoutingStore, refresh_every_s: float = 5.0) -> None:
        self._store = store
        self._rules = RuleSet()
        self._lock = asyncio.Lock()
        self.refresh_every_s = refresh_every_s
        self.loaded_at = 0.0

    @property
    def rules(self) -> RuleSet:
        return self._rules

    def match(self, query: RouteQuery) -> RoutingRule | None:
        return self._rules.first_match(query)

    async def reload(self) -> RuleSet:
        # One reader at a time: a slow read finishing after a newer one must not put older rules back.
        async with self._lock:
            self._rules = RuleSet(await self._store.list_rules())
            self.loaded_at = time.time()
        return self._rules
