"""The `local` runner: the trainer as a subprocess of this forge, in a process group of its own.

Why a group: a trainer forks (data loaders, tokenizer pools, a shell script's children); stopping the group stops
them all. Stop is SIGTERM to the group, then SIGKILL after the grace period. Why the guard: if forge itself dies
(kill -9), nobody reads the trainer's output or renews its lease, and another replica retries the job — so the
trainer must not live on. The guard asks Linux to SIGKILL it when its parent dies (PR_SET_PDEATHSIG, kept across
exec), then becomes the trainer; on other systems it only execs.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import sys
from collections.abc import AsyncIterator
from typing import Any, Final

from .protocol import RunExit, RunnerError, RunSpec

__all__ = ["LocalRunner"]

_LINE_LIMIT: Final = 1 << 20

_GUARD: Final = """\
import os, signal, sys
try:
    import ctypes
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
except (OSError, AttributeError):
    pass
if os.getppid() != int(sys.argv[1]):
    sys.exit(137)  # the parent died before the guard was set
try:
    os.execvp(sys.argv[2], sys.argv[2:])
except OSError as exc:
    import json
    print(json.dumps({"error": f"cannot start the trainer {sys.argv[2]!r}: {exc}"}), flush=True)
    sys.exit(127)
"""


class LocalRun:
    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self._proc = proc
        self._pgid = proc.pid  # start_new_session: the trainer leads a new session and group
        # A child the trainer left behind holds the output pipe open: without this, its end would never be read.
        self._reaper = asyncio.create_task(self._reap_group())

    async def _reap_group(self) -> None:
        await self._exited()
        self._signal_group(signal.SIGKILL)

    async def _exited(self) -> None:
        """Returns when the trainer process ends. Not `proc.wait()`: on Python 3.11 that also waits for every
        holder of its pipes to close them — which a leftover child never does."""
        try:
            fd = os.pidfd_open(self._proc.pid)
        except (AttributeError, OSError):  # not Linux (or a kernel before 5.3)
            while self._proc.returncode is None:  # noqa: ASYNC110 - no event to wait on without a pidfd
                await asyncio.sleep(0.2)
            return
        loop = asyncio.get_running_loop()
        ended: asyncio.Future[None] = loop.create_future()

        def readable() -> None:
            if not ended.done():
                ended.set_result(None)

        loop.add_reader(fd, readable)
        try:
            await ended
        finally:
            loop.remove_reader(fd)
            os.close(fd)

    @property
    def ref(self) -> dict[str, Any]:
        return {"runner": "local", "host": socket.gethostname(), "pid": self._proc.pid, "pgid": self._pgid}

    async def lines(self) -> AsyncIterator[str]:
        stream = self._proc.stdout
        assert stream is not None
        while True:
            try:
                raw = await stream.readline()
            except ValueError:
                yield f"[forge: an output line longer than {_LINE_LIMIT} bytes was dropped]"
                continue
            if not raw:
                return
            yield raw.decode(errors="replace").rstrip("\r\n")

    def _signal_group(self, sig: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self._pgid, sig)

    async def wait(self) -> RunExit:
        await self._reaper
        code = await self._proc.wait()
        if code < 0:
            return RunExit(code, f"killed by {signal.Signals(-code).name}")
        return RunExit(code, f"exited with code {code}")

    async def stop(self, grace_s: float) -> None:
        if self._proc.returncode is None:
            self._signal_group(signal.SIGTERM)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(self._reaper), grace_s)
        self._signal_group(signal.SIGKILL)
        await self._proc.wait()
        await self._reaper


class LocalRunner:
    name = "local"

    async def submit(self, spec: RunSpec) -> LocalRun:
        if not spec.command:
            raise RunnerError("no trainer command is configured (training.worker_command)")
        try:
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-I", "-S", "-c", _GUARD, str(os.getpid()), *spec.command,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
                cwd=spec.workdir,
                env=dict(spec.env),
                start_new_session=True,
                limit=_LINE_LIMIT,
            )  # fmt: skip
        except OSError as exc:
            raise RunnerError(f"cannot start the trainer {spec.command[0]!r}: {exc}") from exc
        return LocalRun(proc)
