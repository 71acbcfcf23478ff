"""Jobs and tasks per user with auth on, over gRPC with real tokens and keys: a user never sees another's job or
task (not even that it exists), lists only their own, and a task runs with its creator's rights."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
import pytest
import pytest_asyncio
from forge.analytics.v1 import analytics_pb2, analytics_pb2_grpc
from forge.training.v1 import task_pb2, training_pb2
from google.protobuf import struct_pb2

from forge_rpc.server.app import ForgeApp
from forge_rpc.testing import running_forge
from tests.auth.conftest import Accounts, bearer, refusal
from tests.fakes import FakeUpstream
from tests.training.conftest import fine_tune, secured_training_config, stub

pytestmark = pytest.mark.asyncio

S = training_pb2


@pytest_asyncio.fixture(scope="module")
async def secured(
    fake: FakeUpstream, jobs_database: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[ForgeApp]:
    config = secured_training_config(fake, jobs_database, tmp_path_factory.mktemp("auth"))
    async with running_forge(config) as app:
        yield app


@pytest_asyncio.fixture
async def accounts(secured: ForgeApp) -> AsyncIterator[Accounts]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{secured.grpc_port}") as channel:
        yield Accounts(channel, secured)


async def test_a_users_job_is_invisible_to_another_user(accounts: Accounts) -> None:
    s = stub(accounts.channel)
    alice, bob, admin = await accounts.new_user(), await accounts.new_user(), await accounts.admin()
    job = await s.CreateJob(S.CreateJobRequest(config=fine_tune(max_steps=2)), metadata=bearer(alice.access_token))
    assert job.user_id == alice.user.id
    for call in (
        s.GetJob(S.GetJobRequest(job_id=job.job_id), metadata=bearer(bob.access_token)),
        s.CancelJob(S.CancelJobRequest(job_id=job.job_id), metadata=bearer(bob.access_token)),
        s.ListJobEvents(S.ListJobEventsRequest(job_id=job.job_id), metadata=bearer(bob.access_token)),
    ):
        assert (await refusal(call)).code() == grpc.StatusCode.NOT_FOUND
    watching = s.WatchJob(S.WatchJobRequest(job_id=job.job_id), metadata=bearer(bob.access_token))
    with pytest.raises(grpc.aio.AioRpcError) as info:
        async for _ in watching:
            pass
    assert info.value.code() == grpc.StatusCode.NOT_FOUND
    assert job.job_id not in [
        j.job_id for j in (await s.ListJobs(S.ListJobsRequest(), metadata=bearer(bob.access_token))).jobs
    ]
    err = await refusal(s.ListJobs(S.ListJobsRequest(user_id="*"), metadata=bearer(bob.access_token)))
    assert err.code() == grpc.StatusCode.PERMISSION_DENIED
    mine = await s.ListJobs(S.ListJobsRequest(), metadata=bearer(alice.access_token))
    assert [j.job_id for j in mine.jobs] == [job.job_id]
    everyone = await s.ListJobs(S.ListJobsRequest(user_id="*", page_size=500), metadata=bearer(admin.access_token))
    assert job.job_id in [j.job_id for j in everyone.jobs]
    unauthenticated = await refusal(s.GetJob(S.GetJobRequest(job_id=job.job_id)))
    assert unauthenticated.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_tasks_and_their_history_are_per_user_and_run_as_their_creator(accounts: Accounts) -> None:
    s = stub(accounts.channel)
    alice, bob = await accounts.new_user(), await accounts.new_user()
    body = struct_pb2.Struct()
    body.update({"model": "fake", "messages": [{"role": "user", "content": "whose task?"}]})
    task = await s.CreateTask(S.CreateTaskRequest(kind="chat", payload=body), metadata=bearer(alice.access_token))
    async for update in s.WatchTask(S.WatchTaskRequest(task_id=task.task_id), metadata=bearer(alice.access_token)):
        final = update.task
    assert final.state == task_pb2.TASK_STATE_COMPLETED and final.user_id == alice.user.id
    err = await refusal(
        s.GetTaskResult(S.GetTaskResultRequest(task_id=task.task_id), metadata=bearer(bob.access_token))
    )
    assert err.code() == grpc.StatusCode.NOT_FOUND
    history = analytics_pb2_grpc.AnalyticsServiceStub(accounts.channel)
    bobs = await history.ListTaskHistory(analytics_pb2.ListTaskHistoryRequest(), metadata=bearer(bob.access_token))
    assert task.task_id not in [t.task_id for t in bobs.tasks]
    alices = await history.ListTaskHistory(analytics_pb2.ListTaskHistoryRequest(), metadata=bearer(alice.access_token))
    assert [t.task_id for t in alices.tasks] == [task.task_id]

    # A task runs with its creator's rights: a key limited to other models cannot queue a chat with this one.
    key = await accounts.new_key(alice, allowed_models=["gpt-4o*"])
    err = await refusal(s.CreateTask(S.CreateTaskRequest(kind="chat", payload=body), metadata=bearer(key.secret)))
    assert err.code() == grpc.StatusCode.PERMISSION_DENIED and "fake" in (err.details() or "")
