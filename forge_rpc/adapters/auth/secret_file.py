"""The JWT signing key kept in the data directory when none is configured: generated once, readable by its
owner only (0600), and shared safely by processes starting together on one data directory."""

from __future__ import annotations

import asyncio
import logging
import secrets
import stat
from pathlib import Path

from ..key_file import write_once

__all__ = ["load_or_create_secret"]

log = logging.getLogger("forge.auth")


def _read(path: Path) -> str:
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        # Someone loosened it (a copy, a restore from backup): tighten it rather than serve with a leaked key file.
        log.warning("%s was readable by others (mode %o); setting it to 0600", path, mode)
        path.chmod(0o600)
    secret = path.read_text(encoding="ascii").strip()
    if len(secret) < 32:
        raise ValueError(f"{path} holds no usable key (under 32 characters); delete it to generate a new one")
    return secret


def _load_or_create(path: Path) -> str:
    if not path.exists() and write_once(path, secrets.token_urlsafe(48).encode("ascii")):
        log.info("generated a JWT signing key in %s (set FORGE_JWT_SECRET to share one between replicas)", path)
    return _read(path)


async def load_or_create_secret(path: Path) -> str:
    return await asyncio.to_thread(_load_or_create, path)
