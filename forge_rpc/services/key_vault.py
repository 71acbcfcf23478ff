"""KeyVault: provider API keys set through the API — sealed into PostgreSQL with the server key, opened into
the live provider objects at start, after each change made here, and every few seconds for changes made by
other replicas. A key never appears in a log line, an error, or an answer."""

from __future__ import annotations

import contextlib
import hashlib
import logging
from dataclasses import dataclass

from ..adapters.providers.directory import ProviderDirectory
from ..adapters.secrets import SecretBox, SecretError, ServerKey
from ..adapters.store.routing_store import RoutingStore, SealedKey

__all__ = ["KeyCheckRecord", "KeyVault", "StoredKeyInfo"]

log = logging.getLogger("forge.routing")


@dataclass(frozen=True, slots=True)
class StoredKeyInfo:
    updated_at: float
    updated_by: str | None
    problem: str = ""
    """Why the stored key is not in use (e.g. sealed under another server key); empty when it is."""


@dataclass(frozen=True, slots=True)
class KeyCheckRecord:
    valid: bool
    tested_at: float
    fingerprint: str


def _purpose(service: str) -> str:
    return f"forge provider key\x00{service}"


def fingerprint(key: str) -> str:
    """Tells two keys apart in memory without keeping a second copy of either."""
    return hashlib.sha256(key.encode()).hexdigest()[:16]


class KeyVault:
    def __init__(self, store: RoutingStore, server_key: ServerKey, directory: ProviderDirectory) -> None:
        self._store = store
        self._server_key = server_key
        self._directory = directory
        self._seen: dict[str, tuple[float, str]] = {}
        """Service → (updated_at, key_id) of the row last applied, so a sync only opens what changed."""
        self._info: dict[str, StoredKeyInfo] = {}
        self._checks: dict[str, KeyCheckRecord] = {}

    def info(self, service: str) -> StoredKeyInfo | None:
        return self._info.get(service)

    def record_check(self, service: str, key: str, valid: bool, at: float) -> None:
        self._checks[service] = KeyCheckRecord(valid, at, fingerprint(key))

    def last_check(self, service: str, key: str | None) -> KeyCheckRecord | None:
        """The last test of the key in use now (a test of an earlier key says nothing about this one)."""
        check = self._checks.get(service)
        return check if check is not None and key is not None and check.fingerprint == fingerprint(key) else None

    async def put(self, service: str, key: str, updated_by: str | None) -> StoredKeyInfo:
        box = await self._server_key.box(create=True)
        assert box is not None
        row = await self._store.put_key(service, box.seal(key, _purpose(service)), box.key_id, updated_by)
        self._apply(service, key)
        self._seen[service] = (row.updated_at.timestamp(), row.key_id)
        info = self._info[service] = StoredKeyInfo(row.updated_at.timestamp(), row.updated_by)
        return info

    async def sync(self) -> None:
        """Applies every stored key that changed since the last sync, and drops those that were deleted."""
        rows = {r.service: r for r in await self._store.list_keys()}
        for service in [s for s in self._seen if s not in rows]:
            del self._seen[service]
            self._info.pop(service, None)
            with contextlib.suppress(KeyError, ValueError):  # not configured (any more): nothing to revert
                self._directory.set_api_key(service, None)
        for service, row in rows.items():
            version = (row.updated_at.timestamp(), row.key_id)
            if self._seen.get(service) != version:
                await self._open(row)
                self._seen[service] = version

    async def _open(self, row: SealedKey) -> None:
        problem = self._problem(row, await self._box_or_problem())
        if problem:
            log.warning("stored API key for service %s is not used: %s", row.service, problem)
        self._info[row.service] = StoredKeyInfo(row.updated_at.timestamp(), row.updated_by, problem)

    async def _box_or_problem(self) -> SecretBox | str | None:
        try:
            return await self._server_key.box(create=False)
        except (SecretError, OSError) as exc:  # an unreadable key file must not stop forge from serving
            return f"the server key cannot be read: {exc}"

    def _problem(self, row: SealedKey, box: SecretBox | str | None) -> str:
        """Opens and applies the row; what went wrong, or "" when it is in use."""
        if isinstance(box, str):
            return box
        if box is None or box.key_id != row.key_id:
            return f"sealed under another server key ({row.key_id}); set the FORGE_SECRET_KEY it was stored with"
        try:
            self._apply(row.service, box.open(row.ciphertext, _purpose(row.service)))
        except SecretError as exc:
            return f"cannot be opened: {exc}"
        return ""

    def _apply(self, service: str, key: str) -> None:
        try:
            self._directory.set_api_key(service, key)
        except KeyError:
            self._directory.remember_key(service, key)  # applies if a reload configures the service again
        except ValueError:
            log.warning("stored API key for service %s ignored: the service takes no key", service)
