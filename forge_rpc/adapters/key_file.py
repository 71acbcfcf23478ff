"""Writing a generated key file once, safely when several processes start together on one data directory."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

__all__ = ["write_once"]


def write_once(path: Path, content: bytes) -> bool:
    """Creates `path` (0600) holding `content` unless it exists; True when this call wrote it.

    Written under a temporary name (mkstemp creates it 0600) and linked into place: link() fails when another
    process got there first, and then both use the winner's file. Nobody ever reads a half-written file."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(content)
            f.flush()
            os.fsync(f.fileno())
        try:
            os.link(tmp, path)
            return True
        except FileExistsError:
            return False
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
