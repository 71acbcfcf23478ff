"""Dataset files a request names (a job's `config.dataset.path`, ValidateJob's `dataset_path`): which ones a
caller may name, and reading one as checked examples.

Non-admin users must name files under `training.dataset_roots`; admins, and the local operator (auth off), may
name any file the server can read. The path is resolved first (symlinks followed), so a link inside a root cannot
lead out of it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..domain import FieldViolation, InvalidArgument, NotFound, PermissionDenied
from ..domain.datasets import DatasetError, read_examples
from .context import principal

__all__ = ["allowed_dataset_path", "read_dataset_file"]


async def allowed_dataset_path(field: str, raw: str, roots: Sequence[Path]) -> Path:
    """The file `raw` names, resolved; PERMISSION_DENIED for a non-admin outside every root (checked before
    anything is said about whether the file exists)."""
    admin = principal.get().is_admin

    def resolve() -> tuple[Path, bool]:
        path = Path(raw).expanduser().resolve()
        return path, admin or any(path.is_relative_to(root.expanduser().resolve()) for root in roots)

    path, allowed = await asyncio.to_thread(resolve)
    if not allowed:
        raise PermissionDenied(
            f"{field}: {raw} is outside the dataset directories this server allows", "DATASET_PATH_NOT_ALLOWED"
        )
    return path


async def read_dataset_file(field: str, path: Path, max_chars: int) -> list[dict[str, Any]]:
    """The file's examples, each checked; INVALID_ARGUMENT naming the first bad line, NOT_FOUND when it is
    missing."""

    def read() -> list[dict[str, Any]]:
        if not path.exists():
            raise NotFound("dataset file", str(path))
        if not path.is_file():
            raise InvalidArgument([FieldViolation(field, f"{path} is not a file")])
        with path.open(encoding="utf-8", errors="strict") as lines:
            return read_examples(lines, max_chars)

    try:
        return await asyncio.to_thread(read)
    except UnicodeDecodeError as exc:
        raise InvalidArgument([FieldViolation(field, f"{path} is not UTF-8 text ({exc.reason})")]) from None
    except DatasetError as exc:
        raise InvalidArgument([FieldViolation(field, f"{path}: {exc}")]) from None
