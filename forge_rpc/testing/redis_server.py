"""`RedisServer`: a real, throwaway `redis-server` process on a free loopback port (tests and benchmarks)."""

from __future__ import annotations

import asyncio
import shutil
import socket
import tempfile
from pathlib import Path
from types import TracebackType

__all__ = ["RedisServer"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RedisServer:
    """No persistence, loopback only. `url` is valid between start() and stop()."""

    def __init__(self, binary: str | None = None) -> None:
        found = binary or shutil.which("redis-server") or "/usr/bin/redis-server"
        if not Path(found).exists():
            raise RuntimeError("redis-server is not installed (tests/run.sh installs it: apt-get install redis-server)")
        self._binary = found
        self._proc: asyncio.subprocess.Process | None = None
        self._dir: tempfile.TemporaryDirectory[str] | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    async def start(self) -> str:
        self._dir = tempfile.TemporaryDirectory(prefix="forge-redis-")
        self.port = _free_port()
        self._proc = await asyncio.create_subprocess_exec(
            self._binary,
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--save", "",
            "--appendonly", "no",
            "--dir", self._dir.name,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )  # fmt: skip
        await self._wait_ready()
        return self.url

    async def _wait_ready(self, timeout: float = 10.0) -> None:
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            try:
                reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
                writer.write(b"PING\r\n")
                await writer.drain()
                line = await reader.readline()
                writer.close()
                await writer.wait_closed()
                if line.startswith(b"+PONG"):
                    return
            except OSError:
                pass
            if self._proc is not None and self._proc.returncode is not None:
                raise RuntimeError(f"redis-server exited with {self._proc.returncode}")
            if asyncio.get_running_loop().time() > deadline:
                raise RuntimeError("redis-server did not answer PING in time")
            await asyncio.sleep(0.02)

    async def stop(self) -> None:
        if self._proc is not None and self._proc.returncode is None:
            self._proc.terminate()
            await self._proc.wait()
        self._proc = None
        if self._dir is not None:
            self._dir.cleanup()
            self._dir = None

    async def __aenter__(self) -> RedisServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        await self.stop()
