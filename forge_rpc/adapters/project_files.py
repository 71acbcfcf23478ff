"""A project directory on this server: where a path leads (resolved, symlinks followed), and the source files a
dataset is extracted from — git's tracked files in a repository (so ignored and untracked files stay out), else
a walk of the directory. Either way only what `extraction.wanted` accepts, and nothing whose real path leaves
the project (a symlink to another user's files is skipped)."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from ..domain.extraction import MAX_FILE_BYTES, wanted
from . import git_repo

__all__ = ["Located", "locate", "read_sources", "source_files"]


@dataclass(frozen=True, slots=True)
class Located:
    path: Path
    """Absolute, symlinks resolved."""
    exists: bool
    is_dir: bool
    under_root: bool
    """It lies under one of the roots it was located against."""


async def locate(raw: str, roots: Sequence[Path] = ()) -> Located:
    """Where `raw` leads: relative paths (and the default ".") start at the first root, or at the working
    directory when there is none."""

    def look() -> Located:
        path = ((roots[0] if roots else Path()) / Path(raw or ".").expanduser()).resolve()
        under = any(path.is_relative_to(root.expanduser().resolve()) for root in roots)
        return Located(path, path.exists(), path.is_dir(), under)

    return await asyncio.to_thread(look)


def _walk(root: Path) -> list[str]:
    out: list[str] = []
    for directory, subdirs, files in os.walk(root):
        here = Path(directory).relative_to(root)
        # Prune what extraction would reject anyway (a file inside it would not be wanted): node_modules and
        # virtualenvs are where a walk spends its time.
        subdirs[:] = [d for d in subdirs if wanted((here / d / "x.py").as_posix())]
        out.extend((here / f).as_posix() for f in files)
    return out


async def source_files(root: Path) -> list[str]:
    """The project-relative paths to extract from, sorted."""
    names = (
        await git_repo.tracked_files(root)
        if await git_repo.is_repository(root)
        else await asyncio.to_thread(_walk, root)
    )
    return sorted(n for n in names if wanted(n))


def read_sources(root: Path, names: Iterable[str]) -> Iterator[tuple[str, str]]:
    """(name, text) of each readable UTF-8 file, lazily (extraction stops reading at its cap). Blocking: call it
    from a worker thread."""
    real_root = root.resolve()
    for name in names:
        try:
            real = (root / name).resolve()
            if not real.is_relative_to(real_root) or not real.is_file() or real.stat().st_size > MAX_FILE_BYTES:
                continue
            yield name, real.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            continue  # deleted since listing, unreadable or binary: not documentation
