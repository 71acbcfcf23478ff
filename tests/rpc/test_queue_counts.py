"""The live metrics snapshot counts the durable queue: jobs and tasks by state, from the jobs table, through
GetMetrics, WatchMetrics and REST (the seed's /api/monitoring/metrics/ too); and the counts are one query per
second however many ask."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aiohttp
import grpc
import pytest
import pytest_asyncio
from forge.analytics.v1 import analytics_pb2, analytics_pb2_grpc
from forge.training.v1 import training_pb2
from google.protobuf import struct_pb2

from forge_rpc.adapters.store.job_counts import JobCounts
from forge_rpc.domain.jobs import JobState, Lane
from forge_rpc.server.app import ForgeApp
from forge_rpc.testing import running_forge
from tests.fakes import FakeUpstream
from tests.training.conftest import fine_tune, new_database, stub, training_config, wait_until, watch

pytestmark = pytest.mark.asyncio

S = training_pb2
A = analytics_pb2


@pytest_asyncio.fixture(scope="module")
async def app(fake: FakeUpstream, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[ForgeApp]:
    """A forge with a queue of its own (no other test's rows), whose task lane claims nothing: tasks stay queued."""
    database = await new_database("queue_counts")
    config = training_config(fake, database, tmp_path_factory.mktemp("queue"), max_concurrent_tasks=0)
    async with running_forge(config) as forge:
        yield forge


@pytest_asyncio.fixture
async def channel(app: ForgeApp) -> AsyncIterator[grpc.aio.Channel]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{app.grpc_port}") as ch:
        yield ch


def chat_task() -> S.CreateTaskRequest:
    payload = struct_pb2.Struct()
    payload.update({"model": "fake", "messages": [{"role": "user", "content": "count me"}]})
    return S.CreateTaskRequest(kind="chat", payload=payload)


async def test_the_snapshot_counts_jobs_and_tasks_by_state(app: ForgeApp, channel: grpc.aio.Channel) -> None:
    s = stub(channel)
    for config in (fine_tune(max_steps=2), fine_tune(max_steps=2, project_name="fail-at-1")):
        job = await s.CreateJob(S.CreateJobRequest(config=config))
        await watch(s, job.job_id)
    # One job at a time per replica: this one holds the slot, the next ones wait behind it.
    running = await s.CreateJob(S.CreateJobRequest(config=fine_tune(max_steps=100_000, save_steps=100_000)))
    await wait_until(s, running.job_id, lambda u: u.job.state == S.JOB_STATE_TRAINING, logs=False)
    await s.CreateJob(S.CreateJobRequest(config=fine_tune()))
    cancelled = await s.CreateJob(S.CreateJobRequest(config=fine_tune()))
    await s.CancelJob(S.CancelJobRequest(job_id=cancelled.job_id))
    paused = await s.CreateJob(S.CreateJobRequest(config=fine_tune()))
    await s.PauseJob(S.PauseJobRequest(job_id=paused.job_id))  # waits on its owner: counted in the total only
    tasks = [await s.CreateTask(chat_task()) for _ in range(3)]
    await s.CancelTask(S.CancelTaskRequest(task_id=tasks[0].task_id))
    jobs = A.QueueCounts(total=6, queued=1, running=1, completed=1, failed=1, cancelled=1)
    queued_tasks = A.QueueCounts(total=3, queued=2, cancelled=1)

    analytics = analytics_pb2_grpc.AnalyticsServiceStub(channel)
    try:
        # The counts may be up to a second old: the stream shows them within a few snapshots.
        stream = analytics.WatchMetrics(A.WatchMetricsRequest(interval_ms=250), timeout=15)
        async for snap in stream:
            if snap.jobs == jobs and snap.tasks == queued_tasks:
                break
        stream.cancel()
        assert snap.jobs == jobs and snap.tasks == queued_tasks, (snap.jobs, snap.tasks)
        got = await analytics.GetMetrics(A.GetMetricsRequest())
        assert got.jobs == jobs and got.tasks == queued_tasks
        async with aiohttp.ClientSession() as http:
            for path in ("/api/v1/analytics/metrics", "/api/monitoring/metrics/"):
                async with http.get(f"http://127.0.0.1:{app.http_port}{path}") as resp:
                    body = await resp.json()
                assert resp.status == 200, body
                assert body["jobs"] == {
                    "total": 6, "queued": 1, "running": 1, "completed": 1, "failed": 1, "cancelled": 1
                }  # fmt: skip
                assert body["tasks"] == {
                    "total": 3, "queued": 2, "running": 0, "completed": 0, "failed": 0, "cancelled": 1
                }  # fmt: skip
    finally:
        await s.CancelJob(S.CancelJobRequest(job_id=running.job_id))


async def test_the_counts_are_one_query_a_second_however_many_ask(app: ForgeApp, channel: grpc.aio.Channel) -> None:
    assert app.pool is not None
    now = [100.0]
    counts = JobCounts(app.pool, max_age_s=1.0, clock=lambda: now[0])
    first = await asyncio.gather(*(counts.counts() for _ in range(20)))
    assert all(c is first[0] for c in first)  # one query answered all twenty
    before = first[0][Lane.TASKS].get(JobState.QUEUED, 0)
    await stub(channel).CreateTask(chat_task())
    now[0] += 0.9
    assert await counts.counts() is first[0]  # still fresh: not asked again
    now[0] += 0.2
    assert (await counts.counts())[Lane.TASKS][JobState.QUEUED] == before + 1
