"""The JWT signing key kept in the data directory when none is configured: generated once, readable by its
owner only (0600), and shared safely by processes starting together on one data directory."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import stat
import tempfile
from pathlib import Path

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
    if path.exists():
        return _read(path)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    # Written under a temporary name (mkstemp creates it 0600) and linked into place: link() fails if another
    # process got there first, and then both use the winner's key. Nobody ever reads a half-written file.
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".jwt_secret.")
    try:
        with os.fdopen(fd, "w", encoding="ascii") as f:
            f.write(secrets.token_urlsafe(48))
            f.flush()
            os.fsync(f.fileno())
        try:
            os.link(tmp, path)
            log.info("generated a JWT signing key in %s (set FORGE_JWT_SECRET to share one between replicas)", path)
        except FileExistsError:
            pass
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
    return _read(path)


async def load_or_create_secret(path: Path) -> str:
    return await asyncio.to_thread(_load_or_create, path)
