"""The `retrain:` section of the config file (seed 001's retrain monitor) and its environment twins.

```yaml
retrain:
  files_threshold: 20           # FORGE_RETRAIN_FILES_THRESHOLD: changed files that call for a retrain
  commits_threshold: 0          # FORGE_RETRAIN_COMMITS_THRESHOLD: commits that do (0: commits alone never do)
  critical_paths: [src/core/**, pyproject.toml]   # FORGE_RETRAIN_CRITICAL_PATHS (comma-separated): any change
                                                  # under one calls for a retrain
  project_roots: [/srv/projects]                  # FORGE_PROJECT_ROOTS (separated like PATH): where non-admin
                                                  # users' project paths must lie; relative paths (the default
                                                  # ".") start at the first one
  base_model: HuggingFaceTB/SmolLM2-135M-Instruct # FORGE_RETRAIN_BASE_MODEL: for a project's first retrain
```
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import ConfigError

__all__ = ["RetrainConfig", "parse_retrain"]


@dataclass(frozen=True, slots=True)
class RetrainConfig:
    files_threshold: int = 20
    commits_threshold: int = 0
    critical_paths: tuple[str, ...] = ()
    """Globs relative to the project directory (`**` spans directories; a directory covers what is under it)."""
    project_roots: tuple[Path, ...] = ()
    """Where non-admin users' projects must lie (admins and the local operator may name any directory)."""
    base_model: str = "HuggingFaceTB/SmolLM2-135M-Instruct"
    """Used when neither the request nor the project's last job names one."""


def _whole(name: str, raw: Any, minimum: int) -> int:
    try:
        value = int(raw)
    except (TypeError, ValueError):
        raise ConfigError(f"retrain.{name} must be a whole number, got {raw!r}") from None
    if value < minimum:
        raise ConfigError(f"retrain.{name} must be at least {minimum}, got {value}")
    return value


def _words(name: str, raw: Any, separator: str) -> tuple[str, ...]:
    """A list from the file, or a separated string from the environment."""
    if isinstance(raw, str):
        raw = raw.split(separator)
    if not isinstance(raw, list) or not all(isinstance(w, str) for w in raw):
        raise ConfigError(f"retrain.{name} must be a list of strings")
    return tuple(w.strip() for w in raw if w.strip())


def parse_retrain(section: Mapping[str, Any], env: Mapping[str, str]) -> RetrainConfig:
    """`section` is the file's `retrain:` mapping (empty when absent); environment variables win over it."""
    d = RetrainConfig()

    def pick(key: str, var: str) -> Any:
        raw = env.get(var)
        return raw if raw not in (None, "") else section.get(key)

    files = pick("files_threshold", "FORGE_RETRAIN_FILES_THRESHOLD")
    commits = pick("commits_threshold", "FORGE_RETRAIN_COMMITS_THRESHOLD")
    critical = pick("critical_paths", "FORGE_RETRAIN_CRITICAL_PATHS")
    roots = pick("project_roots", "FORGE_PROJECT_ROOTS")
    base_model = pick("base_model", "FORGE_RETRAIN_BASE_MODEL")
    root_words = () if roots is None else _words("project_roots", roots, os.pathsep)
    return RetrainConfig(
        files_threshold=d.files_threshold if files is None else _whole("files_threshold", files, 1),
        commits_threshold=d.commits_threshold if commits is None else _whole("commits_threshold", commits, 0),
        critical_paths=() if critical is None else _words("critical_paths", critical, ","),
        project_roots=tuple(Path(r).expanduser() for r in root_words),
        base_model=str(base_model or d.base_model),
    )
