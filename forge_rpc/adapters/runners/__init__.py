"""Where trainers run: `local` (a subprocess on this host) and `ray` (a Ray cluster's Jobs API), behind one
interface; and the job directory they read their spec and dataset from."""

from .local import LocalRunner
from .protocol import Run, RunExit, Runner, RunnerError, RunSpec
from .ray import RayRunner
from .workspace import PreparedJob, Workspace

__all__ = ["LocalRunner", "PreparedJob", "RayRunner", "Run", "RunExit", "RunSpec", "Runner", "RunnerError", "Workspace"]
