"""`forge serve` and the `forge` client commands run as a user runs them: separate processes on free ports."""

from __future__ import annotations

import asyncio
import signal
import socket
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

FORGE = str(Path(sys.executable).parent / "forge")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def run(*args: str, timeout: float = 30) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        FORGE, *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


@dataclass
class Served:
    proc: asyncio.subprocess.Process
    log: asyncio.Task[list[str]]
    """Every line the server logged; done when the process closed its stderr."""

    async def stop(self) -> int:
        """SIGTERM, then its exit code (the log is complete afterwards)."""
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(self.proc.wait(), 15)
        await self.log
        return code


async def start_serve(env: dict[str, str], *args: str) -> Served:
    """`forge serve` once it says the edge listens, with a task that keeps reading its log (a full pipe would block
    the server)."""
    proc = await asyncio.create_subprocess_exec(FORGE, "serve", *args, env=env, stderr=asyncio.subprocess.PIPE)
    assert proc.stderr is not None
    stderr, lines = proc.stderr, list[str]()
    while "HTTP listening" not in (line := (await asyncio.wait_for(stderr.readline(), 60)).decode()):
        assert line, "forge serve exited during start-up:\n" + "".join(lines)
        lines.append(line)

    async def drain() -> list[str]:
        while line := await stderr.readline():
            lines.append(line.decode())
        return lines

    return Served(proc, asyncio.create_task(drain()))


@asynccontextmanager
async def serving(env: dict[str, str], *args: str) -> AsyncIterator[Served]:
    served = await start_serve(env, *args)
    try:
        yield served
    finally:
        await served.stop()
