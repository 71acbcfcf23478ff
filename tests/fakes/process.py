"""FakeUpstream: run the fake server in a subprocess and talk to its control API.

A subprocess, not an in-process app, so the fake never shares an event loop
(or GIL time) with the code under test: its timings stay honest when forge's
loop is busy, and cancellation is observed across a real TCP connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
from pathlib import Path
from types import TracebackType
from typing import Any, Self, cast

import aiohttp

_PACKAGE = __package__ or "tests.fakes"
# Repo root = the directory that contains the top-level package ("tests"),
# so `python -m tests.fakes.server` resolves from there.
REPO_ROOT = Path(__file__).resolve().parents[len(_PACKAGE.split("."))]


class FakeUpstream:
    """``async with FakeUpstream() as fake:`` -> a running fake on 127.0.0.1."""

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        startup_timeout: float = 20.0,
        defaults: dict[str, object] | None = None,
    ) -> None:
        self.host = host
        self.startup_timeout = startup_timeout
        self._initial_defaults = defaults
        self._proc: asyncio.subprocess.Process | None = None
        self._port: int | None = None

    # -- addresses ---------------------------------------------------------
    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("FakeUpstream is not running")
        return self._port

    @property
    def pid(self) -> int:
        if self._proc is None:
            raise RuntimeError("FakeUpstream is not running")
        return self._proc.pid

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def openai_base(self) -> str:
        return f"{self.base_url}/v1"

    # -- lifecycle ---------------------------------------------------------
    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    async def start(self) -> None:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH")) if p)
        self._proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            f"{_PACKAGE}.server",
            "--host",
            self.host,
            "--port",
            "0",
            "--exit-on-stdin-eof",
            cwd=REPO_ROOT,
            env=env,
            # stdin is a pipe we never write: its EOF tells the server that
            # this process died, so no orphan survives a crashed test run.
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        try:
            assert self._proc.stdout is not None
            first = await asyncio.wait_for(self._proc.stdout.readline(), self.startup_timeout)
            if not first:
                code = await self._proc.wait()
                raise RuntimeError(f"fake upstream exited during startup (code {code})")
            self._port = int(json.loads(first)["port"])
            if self._initial_defaults:
                await self.set_defaults(**self._initial_defaults)
        except BaseException:
            await self.stop()
            raise

    async def stop(self) -> None:
        """SIGTERM, then SIGKILL if the server has not exited within 5 s."""
        proc, self._proc, self._port = self._proc, None, None
        if proc is None or proc.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), 5.0)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()

    # -- control API -------------------------------------------------------
    async def _call(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, str] | None = None,
        body: object = None,
        wait_s: float = 10.0,
    ) -> tuple[int, Any]:
        """One control request on a fresh session.

        A session per call (about a millisecond on loopback) keeps the
        FakeUpstream usable from any event loop, e.g. a session-scoped
        fixture used by tests that each run in their own loop.
        """
        if self._port is None:
            raise RuntimeError("FakeUpstream is not running")
        async with (
            aiohttp.ClientSession(base_url=self.base_url) as http,
            http.request(method, path, params=params, json=body, timeout=aiohttp.ClientTimeout(total=wait_s)) as resp,
        ):
            return resp.status, await resp.json(content_type=None)

    async def requests(self, tag: str | None = None) -> list[dict[str, Any]]:
        status, records = await self._call("GET", "/_control/requests", params={"tag": tag} if tag else None)
        if status != 200:
            raise RuntimeError(f"fake upstream: GET /_control/requests -> {status}: {records}")
        return cast(list[dict[str, Any]], records)

    async def reset(self) -> None:
        """Forget records, pull counts and defaults; restore the Ollama store."""
        await self._call("POST", "/_control/reset")

    async def set_defaults(self, **options: object) -> None:
        """Replace the defaults (scenario options and pull_steps/pull_gap_ms)."""
        status, answer = await self._call("POST", "/_control/defaults", body=options)
        if status != 200:
            raise ValueError(f"fake upstream rejected defaults: {answer}")

    async def pulls(self) -> dict[str, int]:
        """Upstream /api/pull count per normalised model name."""
        _, counts = await self._call("GET", "/_control/pulls")
        return cast(dict[str, int], counts)

    async def wait_closed(self, tag: str, timeout: float = 5.0) -> dict[str, Any]:
        """The first record with ``tag`` whose request has ended.

        Long-polls the server, which answers the moment the request ends, so
        this adds no polling latency to a test.
        """
        params = {"tag": tag, "wait_ended": "1", "timeout": str(timeout)}
        status, records = await self._call("GET", "/_control/requests", params=params, wait_s=timeout + 5.0)
        if status == 408:
            raise TimeoutError(f"no request tagged {tag!r} ended within {timeout}s")
        if status != 200:
            raise RuntimeError(f"fake upstream: wait_closed -> {status}: {records}")
        return next(r for r in cast(list[dict[str, Any]], records) if r["ended"] is not None)
