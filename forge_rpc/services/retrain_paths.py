"""Which project directory a request may name (a retrain's repository, or the directory a job extracts its dataset
from): relative paths start at the first configured project root; a non-admin user must stay under one."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..adapters import git_repo
from ..adapters.project_files import locate
from ..domain import FieldViolation, InvalidArgument, NotFound, PermissionDenied
from .context import principal

__all__ = ["project_directory", "project_source"]


async def project_directory(raw: str, roots: Sequence[Path], field: str = "project_path") -> Path:
    """The directory, resolved (symlinks followed, so a link cannot lead out of a root). PERMISSION_DENIED comes
    before NOT_FOUND: a user learns nothing about directories outside the roots, not even whether they exist."""
    located = await locate(raw, roots)
    if not located.under_root and not principal.get().is_admin:
        why = (
            "is outside the project directories this server allows"
            if roots
            else "is not allowed: this server has no project directories for users (retrain.project_roots)"
        )
        raise PermissionDenied(f"{field}: {raw or '.'} {why}", "PROJECT_PATH_NOT_ALLOWED")
    if not located.exists:
        raise NotFound("project directory", str(located.path))
    if not located.is_dir:
        raise InvalidArgument([FieldViolation(field, f"{located.path} is not a directory")])
    return located.path


async def project_source(path: Path) -> dict[str, Any]:
    """The spec entries of a job that extracts its dataset from `path` (a directory project_directory gave): the
    directory, and in a git repository its HEAD commit, from which the retrain monitor counts changes once the
    job completes."""
    spec: dict[str, Any] = {"project_path": str(path)}
    if await git_repo.is_repository(path):
        spec["repository"] = {"path": str(path), "commit": await git_repo.head_commit(path)}
    return spec
