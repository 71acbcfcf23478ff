"""Routing rules and sealed provider keys in PostgreSQL (0005_routing.sql), plus the last minute's request
figures from the usage ledger for the detailed health view.

Nothing here is on a request's path: rules are read whole into the rule book, keys into the directory.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, LiteralString

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from ...domain import ErrorCode, FailedPrecondition, ForgeError
from ...domain.routing_rules import RouteTarget, RoutingRule, TaskType
from .bound import BoundStore

__all__ = ["RoutingStore", "SealedKey", "TrafficStats"]


# A generated id can collide with one a caller chose ("rule-7"); the next number is then tried.
_ID_ATTEMPTS = 5

_RULE_COLUMNS: LiteralString = (
    "id, position, name, task_type, service, model, priority, enabled, match_metadata, match_model,"
    " fallbacks, created_at, updated_at"
)


@dataclass(frozen=True, slots=True)
class SealedKey:
    service: str
    ciphertext: bytes
    key_id: str
    """Which server key sealed it."""
    updated_at: datetime
    updated_by: str | None


@dataclass(frozen=True, slots=True)
class TrafficStats:
    """Generations over a recent window, from the usage ledger."""

    requests: int
    failed: int
    avg_latency_ms: float
    p95_latency_ms: float


def _rule(row: Mapping[str, Any]) -> RoutingRule:
    return RoutingRule(
        id=row["id"],
        service=row["service"],
        model=row["model"],
        task_type=TaskType(row["task_type"]) if row["task_type"] else None,
        priority=row["priority"],
        enabled=row["enabled"],
        match_metadata={str(k): str(v) for k, v in row["match_metadata"].items()},
        match_model=row["match_model"],
        fallbacks=tuple(RouteTarget(str(f.get("service", "")), str(f.get("model", ""))) for f in row["fallbacks"]),
        name=row["name"],
        position=row["position"],
        created_at=row["created_at"].timestamp(),
        updated_at=row["updated_at"].timestamp(),
    )


def _values(rule: RoutingRule) -> dict[str, Any]:
    return {
        "name": rule.name,
        "task_type": rule.task_type.value if rule.task_type is not None else None,
        "service": rule.service,
        "model": rule.model,
        "priority": rule.priority,
        "enabled": rule.enabled,
        "match_metadata": Jsonb(dict(rule.match_metadata)),
        "match_model": rule.match_model,
        "fallbacks": Jsonb([{"service": f.service, "model": f.model} for f in rule.fallbacks]),
    }


class RoutingStore(BoundStore):
    what = "routing storage"

    # -- rules -----------------------------------------------------------------------------------------------
    async def list_rules(self) -> list[RoutingRule]:
        async with self._pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(f"SELECT {_RULE_COLUMNS} FROM routing_rules ORDER BY priority, position")
            return [_rule(r) for r in await cur.fetchall()]

    async def create_rule(self, rule: RoutingRule, created_by: str | None) -> RoutingRule:
        """Inserts `rule`; an empty id is assigned ("rule-<n>"). A taken id is ALREADY_EXISTS."""
        values = {**_values(rule), "created_by": created_by}
        columns = ", ".join(values)
        placeholders = ", ".join(f"%({k})s" for k in values)
        statement = (
            f"INSERT INTO routing_rules (id, {columns})"
            f" VALUES (coalesce(%(id)s, 'rule-' || nextval('routing_rule_numbers')), {placeholders})"
            f" ON CONFLICT (id) DO NOTHING RETURNING {_RULE_COLUMNS}"
        )
        async with self._pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
            for _ in range(_ID_ATTEMPTS if not rule.id else 1):
                await cur.execute(statement, {**values, "id": rule.id or None})
                row = await cur.fetchone()
                if row is not None:
                    return _rule(row)
        if rule.id:
            raise ForgeError(
                f"routing rule {rule.id!r} already exists",
                ErrorCode.ALREADY_EXISTS,
                "ALREADY_EXISTS",
                metadata={"rule_id": rule.id},
            )
        raise ForgeError("could not assign a free rule id", ErrorCode.ABORTED, "ABORTED")

    async def update_rule(self, rule_id: str, change: Callable[[RoutingRule], RoutingRule]) -> RoutingRule | None:
        """Reads the rule under a row lock, applies `change` (which may raise to refuse), writes the result.
        None when there is no such rule."""
        async with self._pool.connection() as conn, conn.transaction(), conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(f"SELECT {_RULE_COLUMNS} FROM routing_rules WHERE id = %s FOR UPDATE", (rule_id,))
            row = await cur.fetchone()
            if row is None:
                return None
            updated = change(_rule(row))
            values = _values(updated)
            assignments = ", ".join(f"{k} = %({k})s" for k in values)
            await cur.execute(
                f"UPDATE routing_rules SET {assignments} WHERE id = %(id)s RETURNING {_RULE_COLUMNS}",
                {**values, "id": rule_id},
            )
            written = await cur.fetchone()
            assert written is not None  # the row is locked: it cannot have gone
            return _rule(written)

    async def delete_rule(self, rule_id: str) -> bool:
        async with self._pool.connection() as conn:
            cur = await conn.execute("DELETE FROM routing_rules WHERE id = %s", (rule_id,))
            return cur.rowcount > 0

    # -- provider keys ---------------------------------------------------------------------------------------
    async def list_keys(self) -> list[SealedKey]:
        async with self._pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
            await cur.execute("SELECT service, ciphertext, key_id, updated_at, updated_by FROM provider_keys")
            return [
                SealedKey(r["service"], bytes(r["ciphertext"]), r["key_id"], r["updated_at"], r["updated_by"])
                for r in await cur.fetchall()
            ]

    async def put_key(self, service: str, ciphertext: bytes, key_id: str, updated_by: str | None) -> SealedKey:
        async with self._pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(
                "INSERT INTO provider_keys (service, ciphertext, key_id, updated_by) VALUES (%s, %s, %s, %s)"
                " ON CONFLICT (service) DO UPDATE SET ciphertext = EXCLUDED.ciphertext, key_id = EXCLUDED.key_id,"
                " updated_by = EXCLUDED.updated_by"
                " RETURNING service, ciphertext, key_id, updated_at, updated_by",
                (service, ciphertext, key_id, updated_by),
            )
            r = await cur.fetchone()
            assert r is not None
            return SealedKey(r["service"], bytes(r["ciphertext"]), r["key_id"], r["updated_at"], r["updated_by"])

    async def delete_key(self, service: str) -> bool:
        async with self._pool.connection() as conn:
            cur = await conn.execute("DELETE FROM provider_keys WHERE service = %s", (service,))
            return cur.rowcount > 0

    # -- traffic ---------------------------------------------------------------------------------------------
    async def recent_traffic(self, window_s: float) -> TrafficStats:
        """Generations that started in the last `window_s` seconds (a cancelled one is not a failure)."""
        try:
            async with self._pool.connection() as conn, conn.cursor() as cur:
                await cur.execute(
                    "SELECT count(*), count(*) FILTER (WHERE status = 'failed'),"
                    " coalesce(avg(latency_ms), 0),"
                    " coalesce(percentile_cont(0.95) WITHIN GROUP (ORDER BY latency_ms), 0)"
                    " FROM usage_ledger WHERE created_at > now() - make_interval(secs => %s)",
                    (window_s,),
                )
                row = await cur.fetchone()
        except psycopg.Error as exc:
            raise FailedPrecondition(f"usage ledger unavailable: {exc}", "STORAGE_UNAVAILABLE") from exc
        assert row is not None
        return TrafficStats(int(row[0]), int(row[1]), float(row[2]), float(row[3]))
