"""The retrain monitor's policy (seed 001's Repo Guardian): what changed in a project's repository since its last
training decides whether to retrain, and a retrain follows a plan of steps with estimated minutes.

Retrain when any holds: `files_threshold` files changed (seed 001's example: 20), a critical path changed, or
`commits_threshold` commits were made (0 turns that rule off). A project never trained, or whose last trained
commit is gone from the repository (history rewritten), is always due.

Critical paths are globs relative to the project directory: `*` and `?` stay within a path segment, `**` spans
segments, and a pattern naming a directory (`src/core`, `src/core/`) covers everything under it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import PurePosixPath
from typing import Any

from .jobs import JobState

__all__ = ["Changes", "Decision", "PlanStep", "RetrainPolicy", "decide", "matches", "plan_steps", "step_statuses"]


@dataclass(frozen=True, slots=True)
class RetrainPolicy:
    files_threshold: int = 20
    commits_threshold: int = 0
    critical_paths: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Changes:
    """A repository compared with the commit its last training used (`base`, "" when never trained)."""

    head: str
    base: str
    base_known: bool
    """False when `base` is no longer in the repository: everything counts as changed."""
    commits: int
    files: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Decision:
    should_retrain: bool
    reason: str
    critical: tuple[str, ...]
    """The changed files that match a critical path."""


@lru_cache(maxsize=256)
def _pattern(glob: str) -> re.Pattern[str]:
    glob = glob.strip().removeprefix("./").strip("/")
    out, i = [], 0
    while i < len(glob):
        if glob.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif glob.startswith("**", i):
            out.append(".*")
            i += 2
        elif glob[i] == "*":
            out.append("[^/]*")
            i += 1
        elif glob[i] == "?":
            out.append("[^/]")
            i += 1
        elif glob[i] == "[" and (end := glob.find("]", i + 2)) != -1:
            members = glob[i + 1 : end]
            out.append("[" + ("^" + members[1:] if members.startswith("!") else members).replace("\\", "\\\\") + "]")
            i = end + 1
        else:
            out.append(re.escape(glob[i]))
            i += 1
    return re.compile("".join(out) + r"\Z")


def matches(glob: str, path: str) -> bool:
    """Does the project-relative `path` fall under `glob` (the file itself or one of its directories)?"""
    pattern = _pattern(glob)
    p = PurePosixPath(path)
    return any(pattern.match(str(candidate)) for candidate in (p, *list(p.parents)[:-1]))


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def decide(policy: RetrainPolicy, changes: Changes) -> Decision:
    critical = tuple(f for f in changes.files if any(matches(g, f) for g in policy.critical_paths))
    if not changes.base:
        return Decision(True, "never trained", critical)
    if not changes.base_known:
        return Decision(True, f"the last trained commit {changes.base[:12]} is no longer in the repository", critical)
    n, c = len(changes.files), changes.commits
    why = []
    if n >= policy.files_threshold:
        why.append(f"{_count(n, 'file')} changed (threshold: {policy.files_threshold})")
    if critical:
        more = f" and {len(critical) - 5} more" if len(critical) > 5 else ""
        why.append(f"critical paths changed: {', '.join(critical[:5])}{more}")
    if policy.commits_threshold and c >= policy.commits_threshold:
        why.append(f"{_count(c, 'commit')} since the last training (threshold: {policy.commits_threshold})")
    if why:
        return Decision(True, "; ".join(why), critical)
    since = f"{_count(n, 'file')} changed (threshold: {policy.files_threshold}), {_count(c, 'commit')}"
    return Decision(False, f"no retrain needed: {since} since {changes.base[:12]}", critical)


@dataclass(frozen=True, slots=True)
class PlanStep:
    name: str
    minutes: float


# The estimates (docs/retrain.md): extraction reads every source file; training takes as long as the project's
# last run did, or a rough per-epoch figure for a first run; evaluation and deployment are short and fixed.
_EXTRACT_BASE_MIN, _EXTRACT_FILES_PER_MIN = 1.0, 500
_VALIDATE_MIN, _EVALUATE_MIN, _DEPLOY_MIN = 1.0, 2.0, 5.0
_EPOCH_MIN, _STEP_MIN = 10.0, 0.05


def plan_steps(
    *, source_files: int, epochs: int, max_steps: int, last_run_s: float | None, auto_deploy: bool
) -> list[PlanStep]:
    if last_run_s:
        train = max(1.0, last_run_s / 60)
    else:
        train = max_steps * _STEP_MIN if max_steps else max(epochs, 1) * _EPOCH_MIN
    steps = [
        PlanStep("extract_data", _EXTRACT_BASE_MIN + source_files / _EXTRACT_FILES_PER_MIN),
        PlanStep("validate_data", _VALIDATE_MIN),
        PlanStep("train", train),
        PlanStep("evaluate", _EVALUATE_MIN),
    ]
    if auto_deploy:
        steps.append(PlanStep("deploy", _DEPLOY_MIN))
    return [PlanStep(s.name, round(s.minutes, 1)) for s in steps]


_RUNNING_AT = {JobState.PREPARING: 0, JobState.TRAINING: 2, JobState.EVALUATING: 3}


def step_statuses(
    names: Sequence[str], state: JobState, status: Mapping[str, Any], error_reason: str, deployed: bool | None
) -> list[str]:
    """Each step's "pending", "running", "done", "failed" or "skipped" for a RETRAIN job in `state`. Extraction
    and validation both happen while the job prepares; a dataset failure is validation's. `deployed` is None until
    a deployment was tried, then whether it succeeded."""
    # Steps known done: extraction and validation once the dataset was written (the job then has artifacts),
    # training too once it evaluated.
    finished = 3 if "eval_loss" in status else 2 if status.get("artifacts") else 0
    ended = state in (JobState.FAILED, JobState.CANCELLED)
    out = []
    for i, name in enumerate(names):
        if name == "deploy":
            out.append("skipped" if ended else "pending" if deployed is None else "done" if deployed else "failed")
        elif state is JobState.COMPLETED:
            out.append("done")
        elif state in _RUNNING_AT:
            at = _RUNNING_AT[state]
            out.append("done" if i < at else "running" if i == at else "pending")
        elif state is JobState.FAILED:
            at = 1 if error_reason == "DATASET_INVALID" else finished
            out.append("done" if i < at else "failed" if i == at else "skipped")
        else:  # cancelled: the rest never runs; queued, paused, cancelling: nothing new is running
            out.append("done" if i < finished else "skipped" if state is JobState.CANCELLED else "pending")
    return out
