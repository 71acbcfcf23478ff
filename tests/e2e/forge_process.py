"""`ForgeProcess`: `forge serve` as a separate OS process, as an operator runs it (replicas, restarts, crashes)."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
from pathlib import Path
from types import TracebackType

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

__all__ = ["FORGE", "ForgeProcess", "free_port", "run_forge"]

FORGE = str(Path(sys.executable).parent / "forge")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def run_forge(*args: str, timeout: float = 60) -> tuple[int, str, str]:
    """A `forge` client command to its end: exit code, stdout, stderr."""
    proc = await asyncio.create_subprocess_exec(
        FORGE, *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


class ForgeProcess:
    """Ports are chosen once, so a restart (`start()` after `stop()`/`kill()`) serves on the same addresses."""

    def __init__(self, env: dict[str, str], *, config: Path | None = None, local_model: bool = False) -> None:
        self.grpc_port, self.http_port = free_port(), free_port()
        # Without the local model unless asked: loading it costs every start ~1 s and a core.
        self._env = {**os.environ, **env} if local_model else {**os.environ, **env, "FORGE_LOCAL_MODEL": "0"}
        self._config = config
        self._proc: asyncio.subprocess.Process | None = None
        self._log: asyncio.Task[None] | None = None
        self.stderr: list[str] = []

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    @property
    def data_dir(self) -> Path:
        """FORGE_DATA_DIR as the process was given it."""
        return Path(self._env["FORGE_DATA_DIR"])

    @property
    def http_base(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    async def start(self, timeout: float = 60.0) -> None:
        args = ["serve", "--grpc-port", str(self.grpc_port), "--http-port", str(self.http_port)]
        if self._config is not None:
            args += ["--config", str(self._config)]
        self._proc = await asyncio.create_subprocess_exec(
            FORGE, *args, env=self._env, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE
        )
        self._log = asyncio.create_task(self._drain())
        await self._wait_serving(timeout)

    async def _drain(self) -> None:
        assert self._proc is not None and self._proc.stderr is not None
        while line := await self._proc.stderr.readline():
            self.stderr.append(line.decode(errors="replace"))

    async def _wait_serving(self, timeout: float) -> None:
        async with grpc.aio.insecure_channel(self.address) as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            deadline = asyncio.get_running_loop().time() + timeout
            while True:
                assert self._proc is not None
                if self._proc.returncode is not None:
                    raise AssertionError("forge serve exited during start-up:\n" + "".join(self.stderr[-30:]))
                try:
                    reply = await stub.Check(health_pb2.HealthCheckRequest(), timeout=1.0)
                    if reply.status == health_pb2.HealthCheckResponse.SERVING:
                        return
                except grpc.aio.AioRpcError:
                    pass
                if asyncio.get_running_loop().time() > deadline:
                    raise AssertionError("forge serve did not become SERVING:\n" + "".join(self.stderr[-30:]))
                await asyncio.sleep(0.1)

    async def _ended(self) -> int:
        assert self._proc is not None
        code = await asyncio.wait_for(self._proc.wait(), 30)
        if self._log is not None:
            await self._log
        return code

    async def stop(self) -> int:
        """SIGTERM, as systemd and Kubernetes stop it; returns the exit code."""
        if self._proc is None or self._proc.returncode is not None:
            return self._proc.returncode if self._proc is not None and self._proc.returncode is not None else 0
        self._proc.send_signal(signal.SIGTERM)
        return await self._ended()

    async def kill(self) -> int:
        """SIGKILL: a crash, nothing runs on the way out."""
        assert self._proc is not None
        self._proc.kill()
        return await self._ended()

    async def __aenter__(self) -> ForgeProcess:
        await self.start()
        return self

    async def __aexit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        await self.stop()
