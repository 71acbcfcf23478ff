"""Password hashing: argon2id (memory-hard, RFC 9106), run on worker threads so the event loop keeps serving.

Each hash costs ~64 MiB and ~0.1 s of CPU (argon2-cffi's defaults, RFC 9106's low-memory profile); a semaphore
bounds how many run at once, so a burst of logins queues instead of exhausting memory.
"""

from __future__ import annotations

import asyncio
import secrets

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

__all__ = ["PasswordVault"]


class PasswordVault:
    def __init__(self, hasher: PasswordHasher | None = None, max_concurrent: int = 4) -> None:
        self._hasher = hasher or PasswordHasher()
        self._slots = asyncio.Semaphore(max_concurrent)
        self._decoy: str | None = None

    async def hash(self, password: str) -> str:
        async with self._slots:
            return await asyncio.to_thread(self._hasher.hash, password)

    async def verify(self, stored: str | None, password: str) -> bool:
        """Whether `password` matches `stored`. With `stored` None (no such user) a decoy hash is checked anyway,
        so an unknown username takes as long as a wrong password and cannot be told apart by timing."""
        if stored is None:
            if self._decoy is None:
                self._decoy = await self.hash(secrets.token_urlsafe(32))  # a password nobody knows
            stored = self._decoy
        async with self._slots:
            return await asyncio.to_thread(self._check, stored, password)

    def _check(self, stored: str, password: str) -> bool:
        try:
            return self._hasher.verify(stored, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False

    def needs_rehash(self, stored: str) -> bool:
        """True when `stored` was made with weaker parameters than today's: Login then stores a new hash."""
        try:
            return self._hasher.check_needs_rehash(stored)
        except InvalidHashError:
            return True
