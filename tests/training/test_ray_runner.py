"""The `ray` runner against a real local Ray head (`ray start --head` on loopback), through its Jobs REST API:
forge's job id is Ray's submission id, progress comes back from the job's logs, cancel stops the Ray job.

Ray is not one of forge's dependencies: the test runs where a `ray` command is on PATH (or FORGE_TEST_RAY names
one), e.g. after `uv venv /tmp/ray && uv pip install --python /tmp/ray "ray[default]"`, and is skipped otherwise.
"""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import grpc
import pytest
import pytest_asyncio
from forge.training.v1 import training_pb2

from forge_rpc.server.app import ForgeApp
from forge_rpc.testing import running_forge
from tests.e2e.forge_process import free_port
from tests.fakes import FakeUpstream
from tests.training.conftest import fine_tune, stub, training_config, wait_until, watch

pytestmark = pytest.mark.asyncio

S = training_pb2
RAY = os.environ.get("FORGE_TEST_RAY") or shutil.which("ray")


async def ray(*args: str) -> None:
    assert RAY is not None
    proc = await asyncio.create_subprocess_exec(
        RAY, *args, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE
    )
    _, err = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode == 0, err.decode()[-2000:]


@pytest_asyncio.fixture(scope="module")
async def ray_head(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[str]:
    if RAY is None:
        pytest.skip("no `ray` command (Ray is optional; set FORGE_TEST_RAY to a ray executable to run this)")
    dashboard = free_port()
    temp = tmp_path_factory.mktemp("ray")
    await ray(
        "start", "--head", "--node-ip-address=127.0.0.1", f"--port={free_port()}", "--dashboard-host=127.0.0.1",
        f"--dashboard-port={dashboard}", "--num-cpus=2", "--include-dashboard=true", "--disable-usage-stats",
        f"--temp-dir={temp}",
    )  # fmt: skip
    try:
        yield f"http://127.0.0.1:{dashboard}"
    finally:
        await ray("stop", "--force")


@pytest_asyncio.fixture(scope="module")
async def app(
    fake: FakeUpstream, jobs_database: str, ray_head: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[ForgeApp]:
    config = training_config(fake, jobs_database, tmp_path_factory.mktemp("rayjobs"), ray_address=ray_head)
    async with running_forge(config) as forge:
        yield forge


async def ray_status(address: str, submission_id: str) -> str:
    async with aiohttp.ClientSession() as http, http.get(f"{address}/api/jobs/{submission_id}") as resp:
        assert resp.status == 200, await resp.text()
        return str((await resp.json())["status"])


async def test_a_job_runs_on_ray_under_its_own_id(app: ForgeApp, ray_head: str) -> None:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{app.grpc_port}") as channel:
        s = stub(channel)
        job = await s.CreateJob(S.CreateJobRequest(config=fine_tune(runner="ray", max_steps=6, save_steps=3)))
        updates = await watch(s, job.job_id)
    final = updates[-1].job
    assert final.state == S.JOB_STATE_COMPLETED and final.runner == "ray" and final.current_step == 6
    assert [u.event.step for u in updates if u.event.type == S.JOB_EVENT_TYPE_CHECKPOINT] == [3]
    assert Path(final.artifacts.adapter_path).name == "adapter.json"
    assert await ray_status(ray_head, job.job_id) == "SUCCEEDED"


async def test_cancel_stops_the_ray_job(app: ForgeApp, ray_head: str) -> None:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{app.grpc_port}") as channel:
        s = stub(channel)
        job = await s.CreateJob(S.CreateJobRequest(config=fine_tune(runner="ray", max_steps=100_000)))
        await wait_until(s, job.job_id, lambda u: u.event.type == S.JOB_EVENT_TYPE_PROGRESS and u.event.step >= 2)
        await s.CancelJob(S.CancelJobRequest(job_id=job.job_id))
        final = (await watch(s, job.job_id))[-1].job
    assert final.state == S.JOB_STATE_CANCELLED
    assert await ray_status(ray_head, job.job_id) == "STOPPED"
