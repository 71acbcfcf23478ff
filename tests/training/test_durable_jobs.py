"""Jobs across real `forge serve` processes: a crash (kill -9) or a shutdown in the middle of a job loses nothing
and the job resumes from its checkpoint; the trainer of a crashed forge does not live on; two replicas on one
database run each job exactly once."""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

import grpc
import pytest
import yaml
from forge.training.v1 import training_pb2

from tests.e2e.forge_process import ForgeProcess
from tests.training.conftest import WORKER, fine_tune, new_database, pid_alive, stub, wait_until, watch

pytestmark = pytest.mark.asyncio

S = training_pb2


def config_file(tmp: Path, runs: Path, step_s: float) -> Path:
    path = tmp / "forge.yaml"
    training = {
        "worker_command": [sys.executable, str(WORKER)],
        "worker_env": {"FORGE_TEST_STEP_S": str(step_s), "FORGE_TEST_RUNS_FILE": str(runs)},
        "lease_s": 2,
        "poll_interval_s": 0.2,
        "stop_grace_s": 1,
    }
    path.write_text(yaml.safe_dump({"providers": {"discover_ollama": False}, "training": training}))
    return path


def replica(database: str, tmp: Path, name: str, runs: Path, step_s: float = 0.1) -> ForgeProcess:
    data = tmp / name
    data.mkdir()
    env = {"FORGE_DATABASE_URL": database, "FORGE_DATA_DIR": str(data), "FORGE_DISCOVER_OLLAMA": "0"}
    return ForgeProcess(env, config=config_file(data, runs, step_s))


def run_lines(runs: Path) -> list[list[str]]:
    return [line.split() for line in runs.read_text().splitlines()] if runs.exists() else []


async def trainer_pid(s: object, job_id: str, min_step: int) -> int:
    pid: list[int] = []

    def ready(u: training_pb2.JobUpdate) -> bool:
        if u.event.message.startswith("worker pid "):
            pid.append(int(u.event.message.split()[-1]))
        return bool(pid) and u.event.type == S.JOB_EVENT_TYPE_CHECKPOINT and u.event.step >= min_step

    await wait_until(s, job_id, ready)  # type: ignore[arg-type]
    return pid[-1]


async def test_a_crashed_forge_loses_no_job_and_the_retry_resumes_from_the_checkpoint(tmp_path: Path) -> None:
    database, runs = await new_database("crash"), tmp_path / "runs.log"
    forge = replica(database, tmp_path, "a", runs)
    await forge.start()
    try:
        async with grpc.aio.insecure_channel(forge.address) as ch:
            job = await stub(ch).CreateJob(S.CreateJobRequest(config=fine_tune(max_steps=40, save_steps=5)))
            pid = await trainer_pid(stub(ch), job.job_id, 5)
        await forge.kill()
        killed = time.monotonic()
        while pid_alive(pid):  # nobody reads its output or renews its lease now: it must not live on
            assert time.monotonic() - killed < 5, "the trainer of a killed forge outlived it"
            await asyncio.sleep(0.05)
        await forge.start()
        async with grpc.aio.insecure_channel(forge.address) as ch:
            updates = await watch(stub(ch), job.job_id, logs=True)
    finally:
        await forge.stop()
    final = updates[-1].job
    assert final.state == S.JOB_STATE_COMPLETED and final.attempt == 2 and final.current_step == 40
    messages = [u.event.message for u in updates]
    assert any("lost its lease during attempt 1" in m for m in messages)
    assert any(m.startswith("resuming from step ") for m in messages)
    lines = run_lines(runs)
    assert [(what, attempt) for what, _, attempt, *_ in lines] == [("start", "1"), ("start", "2"), ("end", "2")]


async def test_a_stopped_forge_hands_the_job_back_at_once(tmp_path: Path) -> None:
    database, runs = await new_database("stop"), tmp_path / "runs.log"
    forge = replica(database, tmp_path, "a", runs)
    await forge.start()
    try:
        async with grpc.aio.insecure_channel(forge.address) as ch:
            job = await stub(ch).CreateJob(S.CreateJobRequest(config=fine_tune(max_steps=40, save_steps=5)))
            pid = await trainer_pid(stub(ch), job.job_id, 5)
        assert await forge.stop() == 0
        assert not pid_alive(pid)  # stopped with forge, not left behind
        await forge.start()
        async with grpc.aio.insecure_channel(forge.address) as ch:
            updates = await watch(stub(ch), job.job_id, logs=True)
    finally:
        await forge.stop()
    final = updates[-1].job
    assert final.state == S.JOB_STATE_COMPLETED and final.attempt == 2
    messages = [u.event.message for u in updates]
    assert any(m.startswith("released: forge stopped; resumes from ") for m in messages)
    assert not any("lost its lease" in m for m in messages)  # handed back, not abandoned
    starts = [attempt for what, _, attempt, *_ in run_lines(runs) if what == "start"]
    assert starts == ["1", "2"]


async def test_two_replicas_on_one_database_run_each_job_exactly_once(tmp_path: Path) -> None:
    database, runs = await new_database("replicas"), tmp_path / "runs.log"
    a = replica(database, tmp_path, "a", runs, step_s=0.05)
    b = replica(database, tmp_path, "b", runs, step_s=0.05)
    await asyncio.gather(a.start(), b.start())
    try:
        async with grpc.aio.insecure_channel(a.address) as ca, grpc.aio.insecure_channel(b.address) as cb:
            jobs = [
                (await stub(ca if i % 2 else cb).CreateJob(S.CreateJobRequest(config=fine_tune(max_steps=8)))).job_id
                for i in range(4)
            ]
            # Watched through the other replica: progress written by one reaches watchers on the other.
            finals = [(await watch(stub(cb if i % 2 else ca), job_id))[-1].job for i, job_id in enumerate(jobs)]
    finally:
        await asyncio.gather(a.stop(), b.stop())
    assert all(f.state == S.JOB_STATE_COMPLETED and f.attempt == 1 for f in finals)
    lines = run_lines(runs)
    for job_id in jobs:
        mine = [what for what, job, *_ in lines if job == job_id]
        assert mine == ["start", "end"], f"{job_id} ran {mine.count('start')} times"
