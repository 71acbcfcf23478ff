"""The retrain monitor's policy: thresholds, critical-path globs, the reasons it gives, the plan's estimates and
each plan step's status as a RETRAIN job moves through its states."""

from __future__ import annotations

import pytest

from forge_rpc.domain.jobs import JobState
from forge_rpc.domain.retrain import Changes, RetrainPolicy, decide, matches, plan_steps, step_statuses

BASE = "a" * 40
HEAD = "b" * 40


def changes(files: int = 0, commits: int = 0, *, names: tuple[str, ...] = (), base: str = BASE) -> Changes:
    listed = names or tuple(f"pkg/file_{i}.py" for i in range(files))
    return Changes(HEAD, base, True, commits, listed)


@pytest.mark.parametrize(
    ("glob", "path", "expected"),
    [
        ("src/core/**", "src/core/engine.py", True),
        ("src/core/**", "src/core/deep/er/x.py", True),
        ("src/core/**", "src/corex/x.py", False),
        ("src/core", "src/core/engine.py", True),  # a directory covers what is under it
        ("src/core/", "src/core/engine.py", True),
        ("pyproject.toml", "pyproject.toml", True),
        ("pyproject.toml", "sub/pyproject.toml", False),  # anchored at the project directory
        ("**/pyproject.toml", "sub/pyproject.toml", True),
        ("**/pyproject.toml", "pyproject.toml", True),
        ("*.toml", "pyproject.toml", True),
        ("*.toml", "cfg/x.toml", False),  # `*` stays within a segment
        ("src/*/api.py", "src/a/api.py", True),
        ("src/*/api.py", "src/a/b/api.py", False),
        ("migrations/0??_*.sql", "migrations/001_init.sql", True),
        ("file[!0-9].txt", "filea.txt", True),
        ("file[!0-9].txt", "file1.txt", False),
        ("./docs/**", "docs/index.md", True),
        ("a+b(c).py", "a+b(c).py", True),  # regex characters are literal
    ],
)
def test_critical_path_globs(glob: str, path: str, expected: bool) -> None:
    assert matches(glob, path) is expected


def test_a_project_never_trained_is_due_whatever_changed() -> None:
    d = decide(RetrainPolicy(files_threshold=20), changes(1, 1, base=""))
    assert d.should_retrain and d.reason == "never trained"


def test_a_vanished_last_commit_is_due() -> None:
    d = decide(RetrainPolicy(), Changes(HEAD, BASE, False, 3, ("a.py",)))
    assert d.should_retrain and d.reason == f"the last trained commit {BASE[:12]} is no longer in the repository"


def test_files_threshold_is_inclusive_and_says_so_as_seed_001_does() -> None:
    policy = RetrainPolicy(files_threshold=20)
    assert decide(policy, changes(20, 15)).reason == "20 files changed (threshold: 20)"
    below = decide(policy, changes(19, 1))
    assert not below.should_retrain
    assert below.reason == f"no retrain needed: 19 files changed (threshold: 20), 1 commit since {BASE[:12]}"


def test_commits_alone_trigger_only_when_that_rule_is_on() -> None:
    assert not decide(RetrainPolicy(files_threshold=20), changes(1, 50)).should_retrain
    on = decide(RetrainPolicy(files_threshold=20, commits_threshold=10), changes(1, 10))
    assert on.should_retrain and on.reason == "10 commits since the last training (threshold: 10)"


def test_a_critical_path_triggers_below_the_thresholds_and_every_reason_is_listed() -> None:
    policy = RetrainPolicy(files_threshold=2, critical_paths=("src/core/**", "pyproject.toml"))
    one = decide(policy, changes(names=("src/core/engine.py",), commits=1))
    assert one.should_retrain and one.critical == ("src/core/engine.py",)
    assert one.reason == "critical paths changed: src/core/engine.py"
    both = decide(policy, changes(names=("README.md", "pyproject.toml"), commits=1))
    assert both.reason == "2 files changed (threshold: 2); critical paths changed: pyproject.toml"
    many = decide(policy, changes(names=tuple(f"src/core/m{i}.py" for i in range(8)), commits=1))
    assert many.reason.endswith("src/core/m4.py and 3 more") and len(many.critical) == 8


def test_nothing_changed_is_not_due() -> None:
    d = decide(RetrainPolicy(), changes(0, 0))
    assert not d.should_retrain and d.reason.startswith("no retrain needed: 0 files changed") and d.critical == ()


def test_the_plan_estimates_from_the_last_run_or_the_config() -> None:
    first = plan_steps(source_files=1000, epochs=3, max_steps=0, last_run_s=None, auto_deploy=False)
    assert [(s.name, s.minutes) for s in first] == [
        ("extract_data", 3.0),
        ("validate_data", 1.0),
        ("train", 30.0),
        ("evaluate", 2.0),
    ]
    capped = plan_steps(source_files=0, epochs=3, max_steps=100, last_run_s=None, auto_deploy=True)
    assert [s.name for s in capped][-1] == "deploy" and capped[2].minutes == 5.0
    again = plan_steps(source_files=0, epochs=3, max_steps=0, last_run_s=1500, auto_deploy=False)
    assert again[2].minutes == 25.0  # the project's last run took 25 minutes


NAMES = ["extract_data", "validate_data", "train", "evaluate", "deploy"]


@pytest.mark.parametrize(
    ("state", "status", "reason", "deployed", "expected"),
    [
        (JobState.QUEUED, {}, "", None, ["pending"] * 5),
        (JobState.PREPARING, {}, "", None, ["running", "pending", "pending", "pending", "pending"]),
        (JobState.TRAINING, {"step": 3}, "", None, ["done", "done", "running", "pending", "pending"]),
        (JobState.EVALUATING, {"step": 9}, "", None, ["done", "done", "done", "running", "pending"]),
        (JobState.COMPLETED, {"eval_loss": 0.5}, "", None, ["done", "done", "done", "done", "pending"]),
        (JobState.COMPLETED, {"eval_loss": 0.5}, "", True, ["done"] * 5),
        (JobState.COMPLETED, {"eval_loss": 0.5}, "", False, ["done", "done", "done", "done", "failed"]),
        (JobState.FAILED, {}, "DATASET_INVALID", None, ["done", "failed", "skipped", "skipped", "skipped"]),
        (
            JobState.FAILED,
            {"artifacts": {"output_dir": "/x"}, "step": 2},
            "TRAINER_FAILED",
            None,
            ["done", "done", "failed", "skipped", "skipped"],
        ),
        (
            JobState.CANCELLED,
            {"artifacts": {"output_dir": "/x"}},
            "",
            None,
            ["done", "done", "skipped", "skipped", "skipped"],
        ),
        (
            JobState.PAUSED,
            {"artifacts": {"output_dir": "/x"}},
            "",
            None,
            ["done", "done", "pending", "pending", "pending"],
        ),
    ],
)
def test_plan_step_statuses_follow_the_job(
    state: JobState, status: dict[str, object], reason: str, deployed: bool | None, expected: list[str]
) -> None:
    assert step_statuses(NAMES, state, status, reason, deployed) == expected
