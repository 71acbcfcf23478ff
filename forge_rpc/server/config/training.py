"""The `training:` section of the config file and its environment twins.

```yaml
training:
  worker: true                  # FORGE_TRAINING_WORKER: this replica claims jobs and tasks (false: API only)
  worker_command: [python, -m, forge_rpc.trainer]   # FORGE_TRAINING_COMMAND (shell words); the spec path follows
  worker_env: {HF_HOME: /srv/hf}                    # extra environment for the trainer
  jobs_dir: /srv/forge/jobs     # FORGE_JOBS_DIR (default: <data_dir>/jobs)
  max_concurrent_jobs: 1        # FORGE_TRAINING_CONCURRENCY: trainers per replica
  max_concurrent_tasks: 4       # FORGE_TASK_CONCURRENCY: tasks per replica
  lease_s: 30                   # FORGE_JOB_LEASE_S: a dead worker's job is retried after this
  max_attempts: 3               # claims a job may lose to dead workers before it fails
  poll_interval_s: 2            # claim/reap poll when no NOTIFY arrives
  stop_grace_s: 3               # SIGTERM → SIGKILL of a trainer's process group
  task_timeout_s: 300           # one task's upstream deadline
  evaluate_timeout_s: 1800      # ValidateJob on another file is stopped after this
  default_runner: local         # or ray
  ray_address: http://127.0.0.1:8265   # FORGE_RAY_ADDRESS: enables the ray runner
  dataset_roots: [/srv/datasets]       # where non-admin users' dataset files must lie
  max_example_chars: 100000     # a longer example fails the dataset check
  base_ggufs:                   # DeployJob: the GGUF of each base model forge cannot find one of by itself
    unsloth/Llama-3.2-3B-Instruct: /srv/gguf/Llama-3.2-3B-Instruct-f16.gguf
```
"""

from __future__ import annotations

import importlib.util
import os
import shlex
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import ConfigError

__all__ = ["TrainingConfig", "parse_training"]

# Never handed to a trainer: forge's own secrets and connection strings.
_PRIVATE_ENV = ("FORGE_JWT_SECRET", "FORGE_ADMIN_PASSWORD", "FORGE_DATABASE_URL", "FORGE_REDIS_URL")


# What deploy/optional.sh's ensure_train_env installs beside this checkout: torch's CPU build and the rest of the
# `train` extra, in a venv of its own.
TRAIN_RUNTIME = Path(__file__).resolve().parents[3] / ".tools" / "train" / "bin" / "python"


def _default_command(runtime: Path = TRAIN_RUNTIME) -> tuple[str, ...]:
    """This interpreter when it has the `train` extra; else the checkout's trainer runtime when installed (the
    core never imports torch, so it need not share forge's venv); else this interpreter, which then says what
    is missing in the job's error."""
    if importlib.util.find_spec("torch") is None and runtime.is_file():
        return (str(runtime), "-m", "forge_rpc.trainer")
    return (sys.executable, "-m", "forge_rpc.trainer")


def _inherited_env(env: Mapping[str, str] | None = None) -> dict[str, str]:
    # A config built in code (tests, embedding forge) gets the process environment, as load_config() would.
    return {k: v for k, v in (os.environ if env is None else env).items() if k not in _PRIVATE_ENV}


@dataclass(frozen=True, slots=True)
class TrainingConfig:
    worker: bool = True
    """This replica claims and runs jobs and tasks; false makes it serve the API only."""
    worker_command: tuple[str, ...] = field(default_factory=_default_command)
    """The trainer program; forge appends the job's spec path (also in FORGE_JOB_SPEC). Any program that speaks
    the progress protocol (docs/training-worker-protocol.md) fits: an Unsloth, axolotl or TRL script."""
    worker_env: Mapping[str, str] = field(default_factory=_inherited_env)
    """The trainer's environment: forge's own (minus its secrets) plus the file's `worker_env`."""
    jobs_dir: Path | None = None
    """Job directories (dataset, spec, output, checkpoints, log); None is `<data_dir>/jobs`."""
    max_concurrent_jobs: int = 1
    max_concurrent_tasks: int = 4
    lease_s: float = 30.0
    max_attempts: int = 3
    poll_interval_s: float = 2.0
    stop_grace_s: float = 3.0
    task_timeout_s: float = 300.0
    evaluate_timeout_s: float = 1800.0
    """ValidateJob with a dataset_path: the trainer's evaluate mode is stopped after this."""
    default_runner: str = "local"
    ray_address: str | None = None
    dataset_roots: tuple[Path, ...] = ()
    max_example_chars: int = 100_000
    base_ggufs: Mapping[str, Path] = field(default_factory=dict)
    """Base model name → the GGUF a deployment builds on (SmolLM2-135M-Instruct's is found without it)."""


def _number(name: str, raw: Any, *, minimum: float, whole: bool = False) -> Any:
    try:
        value = int(raw) if whole else float(raw)
    except (TypeError, ValueError):
        raise ConfigError(f"{name} must be a {'whole ' if whole else ''}number, got {raw!r}") from None
    if value < minimum:
        raise ConfigError(f"{name} must be at least {minimum}, got {value}")
    return value


def _bool(name: str, raw: Any) -> bool:
    if isinstance(raw, bool):
        return raw
    text = str(raw).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{name} must be true or false, got {raw!r}")


def parse_training(section: Mapping[str, Any], env: Mapping[str, str]) -> TrainingConfig:
    """`section` is the file's `training:` mapping (empty when absent); environment variables win over it."""
    d = TrainingConfig()

    def pick(key: str, var: str | None = None) -> Any:
        raw = env.get(var) if var else None
        return raw if raw not in (None, "") else section.get(key)

    command_raw = pick("worker_command", "FORGE_TRAINING_COMMAND")
    if command_raw is None:
        command = d.worker_command
    elif isinstance(command_raw, str):
        command = tuple(shlex.split(command_raw))
    elif isinstance(command_raw, list) and all(isinstance(w, str) for w in command_raw):
        command = tuple(command_raw)
    else:
        raise ConfigError("training.worker_command must be a list of words or a shell-quoted string")
    if not command:
        raise ConfigError("training.worker_command must not be empty")
    extra = section.get("worker_env") or {}
    if not isinstance(extra, Mapping):
        raise ConfigError("training.worker_env must be a mapping of names to values")
    worker_env = _inherited_env(env)
    worker_env.update({str(k): str(v) for k, v in extra.items()})
    runner = str(pick("default_runner", "FORGE_TRAINING_RUNNER") or d.default_runner)
    ray = pick("ray_address", "FORGE_RAY_ADDRESS")
    if runner not in ("local", "ray"):
        raise ConfigError(f"training.default_runner must be local or ray, got {runner!r}")
    if runner == "ray" and not ray:
        raise ConfigError("training.default_runner is ray but no ray_address (FORGE_RAY_ADDRESS) is set")
    roots = section.get("dataset_roots") or []
    if not isinstance(roots, list):
        raise ConfigError("training.dataset_roots must be a list of directories")
    ggufs = section.get("base_ggufs") or {}
    if not isinstance(ggufs, Mapping):
        raise ConfigError("training.base_ggufs must map base model names to GGUF files")
    jobs_dir = pick("jobs_dir", "FORGE_JOBS_DIR")
    worker = pick("worker", "FORGE_TRAINING_WORKER")

    def num(key: str, var: str | None, default: Any, minimum: float, whole: bool = False) -> Any:
        raw = pick(key, var)
        return default if raw is None else _number(f"training.{key}", raw, minimum=minimum, whole=whole)

    return TrainingConfig(
        worker=d.worker if worker is None else _bool("FORGE_TRAINING_WORKER", worker),
        worker_command=command,
        worker_env=worker_env,
        jobs_dir=Path(str(jobs_dir)).expanduser() if jobs_dir else None,
        max_concurrent_jobs=num("max_concurrent_jobs", "FORGE_TRAINING_CONCURRENCY", d.max_concurrent_jobs, 0, True),
        max_concurrent_tasks=num("max_concurrent_tasks", "FORGE_TASK_CONCURRENCY", d.max_concurrent_tasks, 0, True),
        lease_s=num("lease_s", "FORGE_JOB_LEASE_S", d.lease_s, 1.0),
        max_attempts=num("max_attempts", None, d.max_attempts, 1, True),
        poll_interval_s=num("poll_interval_s", None, d.poll_interval_s, 0.05),
        stop_grace_s=num("stop_grace_s", None, d.stop_grace_s, 0.0),
        task_timeout_s=num("task_timeout_s", None, d.task_timeout_s, 1.0),
        evaluate_timeout_s=num("evaluate_timeout_s", None, d.evaluate_timeout_s, 1.0),
        default_runner=runner,
        ray_address=str(ray) if ray else None,
        dataset_roots=tuple(Path(str(r)).expanduser() for r in roots),
        max_example_chars=num("max_example_chars", None, d.max_example_chars, 1, True),
        base_ggufs={str(k): Path(str(v)).expanduser() for k, v in ggufs.items()},
    )
