"""Numbered SQL migrations (`migrations/NNNN_name.sql`, shipped in the package), applied at start-up.

Safe when several replicas start at once: every runner takes one session-level advisory lock first, so they
apply in turn and the later ones find nothing left to do. Each migration runs in its own transaction
together with its `schema_migrations` row, so a migration is either applied and recorded, or neither.
"""

from __future__ import annotations

import hashlib
import logging
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from importlib.resources import files

import psycopg

__all__ = ["Migration", "MigrationError", "load_migrations", "migrate"]

log = logging.getLogger("forge.store.migrations")

# Advisory lock keys are one bigint per database, shared by every application using it: derive ours from a
# name instead of picking a small number someone else might also pick.
LOCK_KEY = int.from_bytes(hashlib.sha256(b"forge.schema_migrations").digest()[:8], "big", signed=True)

_FILE_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")

_HISTORY_TABLE = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version    integer PRIMARY KEY,
    name       text NOT NULL,
    checksum   text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
)
"""


class MigrationError(RuntimeError):
    """The migrations cannot be applied as shipped (bad file set, or an applied one was edited)."""


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        # Over normalised line endings, so a Windows checkout of the same file is the same migration.
        return hashlib.sha256(self.sql.replace("\r\n", "\n").encode()).hexdigest()


def load_migrations() -> tuple[Migration, ...]:
    """The packaged migrations in version order."""
    found: dict[int, Migration] = {}
    for entry in (files(__package__) / "migrations").iterdir():
        match = _FILE_NAME.match(entry.name)
        if match is None:
            continue
        version = int(match[1])
        if version in found:
            raise MigrationError(f"two migrations numbered {version:04d}: {found[version].name}, {match[2]}")
        found[version] = Migration(version, match[2], entry.read_text(encoding="utf-8"))
    return tuple(found[v] for v in sorted(found))


async def migrate(url: str, migrations: Sequence[Migration] | None = None) -> list[int]:
    """Applies whatever of `migrations` (default: the packaged ones) this database lacks; returns the
    versions applied by this call.

    Uses its own connection rather than the pool: the pool's connections need the `vector` type that the
    first migration creates, and the advisory lock belongs to one session for the whole run.
    """
    pending_set = load_migrations() if migrations is None else tuple(migrations)
    applied_now: list[int] = []
    async with await psycopg.AsyncConnection.connect(url, autocommit=True, application_name="forge-migrate") as conn:
        began = time.perf_counter()
        # Blocks while another replica migrates. Released below, and by the server if this session dies.
        await conn.execute("SELECT pg_advisory_lock(%s)", [LOCK_KEY])
        waited = time.perf_counter() - began
        try:
            await conn.execute(_HISTORY_TABLE)
            cur = await conn.execute("SELECT version, checksum FROM schema_migrations")
            applied: dict[int, str] = dict(await cur.fetchall())
            _check_history(applied, pending_set)
            for migration in pending_set:
                if migration.version in applied:
                    continue
                started = time.perf_counter()
                try:
                    async with conn.transaction():
                        # No parameters: psycopg sends the file as one simple query, so it may hold many
                        # statements (and `%` needs no escaping).
                        await conn.execute(migration.sql)
                        await conn.execute(
                            "INSERT INTO schema_migrations (version, name, checksum) VALUES (%s, %s, %s)",
                            [migration.version, migration.name, migration.checksum],
                        )
                except psycopg.Error as exc:
                    raise MigrationError(f"migration {migration.version:04d}_{migration.name} failed: {exc}") from exc
                log.info(
                    "applied migration %04d_%s in %.0f ms",
                    migration.version,
                    migration.name,
                    (time.perf_counter() - started) * 1000,
                )
                applied_now.append(migration.version)
        finally:
            if not conn.broken:
                await conn.execute("SELECT pg_advisory_unlock(%s)", [LOCK_KEY])
    if not applied_now:
        log.debug("schema up to date (waited %.0f ms for the migration lock)", waited * 1000)
    return applied_now


def _check_history(applied: dict[int, str], known: Sequence[Migration]) -> None:
    by_version = {m.version: m for m in known}
    for version, checksum in sorted(applied.items()):
        migration = by_version.get(version)
        if migration is None:
            # A newer forge already migrated this database (a rolling upgrade, or a rollback): keep running,
            # since migrations only add.
            log.warning("database has migration %04d, which this forge does not know", version)
        elif migration.checksum != checksum:
            raise MigrationError(
                f"migration {version:04d}_{migration.name} was changed after it was applied; "
                "never edit an applied migration, add a new one"
            )
