"""The `ray` runner: the trainer as a job of a Ray cluster, through the Ray Jobs REST API (no `ray` import).

forge's job id is Ray's submission id, so either side names the same run. A later attempt of the same job first
looks for that submission: still running (forge restarted, the cluster did not), it is followed again rather than
started twice; finished, the new attempt is submitted as `<job_id>_attempt<N>`. Output is read by polling
`GET /api/jobs/{id}/logs` (the tail endpoint is a websocket that some proxies drop; a poll per second is cheap at
training speed). The cluster must see the job directory forge writes (a shared filesystem, or a head on this
host): only the FORGE_* job variables are sent along, as the job's runtime_env.
"""

from __future__ import annotations

import asyncio
import shlex
from collections.abc import AsyncIterator
from typing import Any, Final

import aiohttp

from .protocol import RunExit, RunnerError, RunSpec

__all__ = ["RayRunner"]

_TERMINAL: Final = frozenset({"SUCCEEDED", "FAILED", "STOPPED"})
_LIVE: Final = frozenset({"PENDING", "RUNNING"})


class RayRun:
    def __init__(self, runner: RayRunner, submission_id: str, log_offset: int = 0) -> None:
        self._runner = runner
        self.submission_id = submission_id
        self._offset = log_offset
        self._status: dict[str, Any] = {}

    @property
    def ref(self) -> dict[str, Any]:
        return {"runner": "ray", "address": self._runner.address, "submission_id": self.submission_id}

    async def lines(self) -> AsyncIterator[str]:
        partial = ""
        while True:
            self._status = await self._runner.status(self.submission_id)
            done = self._status.get("status") in _TERMINAL
            logs = await self._runner.logs(self.submission_id)
            fresh, self._offset = logs[self._offset :], len(logs)
            *complete, partial = (partial + fresh).split("\n")
            for line in complete:
                yield line.rstrip("\r")
            if done:
                if partial:
                    yield partial
                return
            await asyncio.sleep(self._runner.poll_s)

    async def wait(self) -> RunExit:
        if self._status.get("status") not in _TERMINAL:
            self._status = await self._runner.status(self.submission_id)
        status = str(self._status.get("status", "UNKNOWN"))
        detail = f"Ray job {self.submission_id} {status.lower()}: {self._status.get('message') or ''}".strip()
        return RunExit({"SUCCEEDED": 0, "STOPPED": 143}.get(status, 1), detail)

    async def stop(self, grace_s: float) -> None:
        await self._runner.request("POST", f"/api/jobs/{self.submission_id}/stop")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace_s + 10.0
        while loop.time() < deadline:
            self._status = await self._runner.status(self.submission_id)
            if self._status.get("status") in _TERMINAL:
                return
            await asyncio.sleep(0.5)


class RayRunner:
    name = "ray"

    def __init__(self, address: str, poll_s: float = 1.0) -> None:
        self.address = address.rstrip("/")
        self.poll_s = poll_s
        self._session: aiohttp.ClientSession | None = None

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def request(self, method: str, path: str, body: dict[str, Any] | None = None) -> tuple[int, Any]:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30))
        try:
            async with self._session.request(method, self.address + path, json=body) as resp:
                text = await resp.text()
                try:
                    data: Any = await resp.json(content_type=None) if text else {}
                except ValueError:
                    data = {"message": text}
                return resp.status, data
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise RunnerError(f"the Ray cluster at {self.address} is unreachable: {exc}") from exc

    async def status(self, submission_id: str) -> dict[str, Any]:
        code, data = await self.request("GET", f"/api/jobs/{submission_id}")
        if code != 200 or not isinstance(data, dict):
            raise RunnerError(f"Ray job {submission_id}: status answered HTTP {code}: {data}")
        return data

    async def logs(self, submission_id: str) -> str:
        code, data = await self.request("GET", f"/api/jobs/{submission_id}/logs")
        if code != 200 or not isinstance(data, dict):
            raise RunnerError(f"Ray job {submission_id}: logs answered HTTP {code}: {data}")
        return str(data.get("logs", ""))

    async def submit(self, spec: RunSpec) -> RayRun:
        if not spec.command:
            raise RunnerError("no trainer command is configured (training.worker_command)")
        submission_id = spec.job_id
        code, existing = await self.request("GET", f"/api/jobs/{submission_id}")
        if code == 200 and isinstance(existing, dict):
            if existing.get("status") in _LIVE:
                # forge lost track of it (a restart); the run itself went on: follow it from here.
                return RayRun(self, submission_id, len(await self.logs(submission_id)))
            submission_id = f"{spec.job_id}_attempt{spec.attempt}"
        body = {
            "entrypoint": shlex.join(spec.command),
            "submission_id": submission_id,
            "runtime_env": {"env_vars": {k: v for k, v in spec.env.items() if k.startswith("FORGE_")}},
            "metadata": {"forge_job_id": spec.job_id, "attempt": str(spec.attempt)},
        }
        code, data = await self.request("POST", "/api/jobs/", body)
        if code != 200:
            raise RunnerError(f"the Ray cluster refused the job (HTTP {code}): {data}")
        return RayRun(self, submission_id)
