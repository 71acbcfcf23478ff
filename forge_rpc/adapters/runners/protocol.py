"""What every runner offers: submit a trainer command, stream its output lines, learn how it ended, stop it.

A runner knows nothing about jobs, leases or the progress protocol: it runs a command somewhere and hands back
its output, one line at a time. The training executor (services/training_run.py) does the rest.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

__all__ = ["Run", "RunExit", "RunSpec", "Runner", "RunnerError"]


class RunnerError(Exception):
    """The command could not be started (bad command, cluster unreachable); the message says why."""


@dataclass(frozen=True, slots=True)
class RunSpec:
    job_id: str
    attempt: int
    command: tuple[str, ...]
    env: Mapping[str, str]
    """The complete environment of a local process; only the FORGE_* job variables travel to a cluster."""
    workdir: Path


@dataclass(frozen=True, slots=True)
class RunExit:
    code: int
    """0 when the command succeeded."""
    detail: str = ""
    """How it ended, in words (a signal, the cluster's message)."""


class Run(Protocol):
    @property
    def ref(self) -> dict[str, Any]:
        """Where it runs, kept with the job (host and pid, or a Ray submission id)."""
        ...

    def lines(self) -> AsyncIterator[str]:
        """Its output, stdout and stderr interleaved, one line at a time, until it ends."""
        ...

    async def wait(self) -> RunExit:
        """How it ended; call after `lines()` is exhausted."""
        ...

    async def stop(self, grace_s: float) -> None:
        """Asks it to stop, and forces it after `grace_s` seconds; returns once it is gone."""
        ...


class Runner(Protocol):
    name: str

    async def submit(self, spec: RunSpec) -> Run: ...
