"""Sealing secrets at rest (provider API keys) with the server key: AES-256-GCM, one random nonce per value.

The server key is `FORGE_SECRET_KEY` (every replica must share it), else 32 random bytes generated once into
`data_dir/secret.key`, readable by its owner only. Each sealed value is bound to what it is for (the
associated data, e.g. the service name), so a row copied onto another service fails to open instead of
handing that service the wrong key.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import logging
import os
import stat
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from .key_file import write_once

__all__ = ["KEY_FILE", "SecretBox", "SecretError", "ServerKey"]

log = logging.getLogger("forge.secrets")

KEY_FILE = "secret.key"
_VERSION = b"\x01"
_NONCE = 12


class SecretError(Exception):
    """A sealed value cannot be opened: another server key sealed it, or it was altered."""


class SecretBox:
    """Seals and opens short secrets under one 256-bit key."""

    __slots__ = ("_aead", "key_id")

    def __init__(self, key: bytes) -> None:
        if len(key) != 32:
            raise ValueError("the server key must be 32 bytes")
        self._aead = AESGCM(key)
        # Names the key without revealing it: stored next to each sealed value.
        self.key_id = hashlib.sha256(b"forge server key id\x00" + key).hexdigest()[:16]

    def seal(self, plain: str, purpose: str) -> bytes:
        nonce = os.urandom(_NONCE)
        return _VERSION + nonce + self._aead.encrypt(nonce, plain.encode(), purpose.encode())

    def open(self, sealed: bytes, purpose: str) -> str:
        if len(sealed) < 1 + _NONCE + 16 or sealed[:1] != _VERSION:
            raise SecretError("not a value sealed by forge")
        nonce, body = sealed[1 : 1 + _NONCE], sealed[1 + _NONCE :]
        try:
            return self._aead.decrypt(nonce, body, purpose.encode()).decode()
        except InvalidTag:
            raise SecretError("sealed under another server key, or altered") from None


def _derive(secret: str) -> bytes:
    # HKDF, not a password hash: FORGE_SECRET_KEY is meant to be a long random value (config requires ≥ 32
    # characters), so there is nothing to stretch.
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=b"forge", info=b"forge secret box v1").derive(
        secret.encode()
    )


def _read_key_file(path: Path) -> bytes:
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        log.warning("%s was readable by others (mode %o); setting it to 0600", path, mode)
        path.chmod(0o600)
    try:
        key = base64.urlsafe_b64decode(path.read_bytes().strip())
    except (binascii.Error, ValueError):
        key = b""
    if len(key) != 32:
        raise SecretError(f"{path} holds no usable key; restore it (stored provider keys need it)")
    return key


def _load_or_create(path: Path) -> bytes:
    if not path.exists() and write_once(path, base64.urlsafe_b64encode(os.urandom(32)) + b"\n"):
        log.info("generated a server key in %s (set FORGE_SECRET_KEY to share one between replicas)", path)
    return _read_key_file(path)


class ServerKey:
    """The server's SecretBox, made on first use: a forge that never stores a secret never writes a key file."""

    def __init__(self, secret: str | None, data_dir: Path) -> None:
        self._secret = secret
        self._path = data_dir / KEY_FILE
        self._box: SecretBox | None = None
        self._lock = asyncio.Lock()

    @property
    def source(self) -> str:
        """ "env" (FORGE_SECRET_KEY) or the key file's path."""
        return "env" if self._secret else str(self._path)

    async def box(self, create: bool = True) -> SecretBox | None:
        """The box; None when there is no key yet and `create` is false (nothing was ever sealed here)."""
        if self._box is not None:
            return self._box
        async with self._lock:
            if self._box is None:
                if self._secret:
                    self._box = SecretBox(_derive(self._secret))
                elif create or self._path.exists():
                    self._box = SecretBox(await asyncio.to_thread(_load_or_create, self._path))
        return self._box
