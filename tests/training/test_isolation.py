"""Per-user isolation of jobs and tasks, at the servicers with explicit principals (as the auth policy will set
them): a user sees, lists, watches and controls only their own rows; admins see everyone's."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, cast

import pytest
import pytest_asyncio
from forge.analytics.v1 import analytics_pb2
from forge.training.v1 import training_pb2
from google.protobuf import struct_pb2
from psycopg_pool import AsyncConnectionPool

from forge_rpc.adapters.store import create_pool, migrate
from forge_rpc.adapters.store.job_notify import JobSignals
from forge_rpc.adapters.store.job_store import JobStore
from forge_rpc.domain import ForgeError
from forge_rpc.domain.identity import Principal, Role
from forge_rpc.domain.jobs import Lane
from forge_rpc.services.context import CallContext, principal
from forge_rpc.services.task_history import TaskHistoryServicer
from forge_rpc.services.tasks import TasksServicer
from forge_rpc.services.training import JobPolicy, TrainingJobsServicer
from tests.training.conftest import fine_tune, new_database

pytestmark = pytest.mark.asyncio

S = training_pb2
CTX = cast(CallContext, None)  # these servicer methods read the caller from `principal`, not the context
ALICE = Principal(user_id="usr_alice", role=Role.USER)
BOB = Principal(user_id="usr_bob", role=Role.USER)
ADMIN = Principal(user_id="usr_admin", role=Role.ADMIN)


@contextmanager
def caller(who: Principal) -> Iterator[None]:
    token = principal.set(who)
    try:
        yield
    finally:
        principal.reset(token)


@pytest_asyncio.fixture(scope="module")
async def store() -> AsyncIterator[JobStore]:
    url = await new_database("isolation")
    await migrate(url)
    pool: AsyncConnectionPool[Any] = create_pool(url, max_size=2)
    await pool.open(wait=True)
    s = JobStore()
    s.bind(pool)
    yield s
    await pool.close()


def servicers(store: JobStore, roots: tuple[Path, ...] = ()) -> tuple[TrainingJobsServicer, TasksServicer]:
    signals = JobSignals()  # not listening: nothing here waits for a change
    return (
        TrainingJobsServicer(store, signals, JobPolicy(dataset_roots=roots)),
        TasksServicer(store, signals, ["chat"], concurrency=1),
    )


async def expect(code: str, call: Any) -> ForgeError:
    with pytest.raises(ForgeError) as info:
        await call
    assert info.value.code.name == code
    return info.value


async def test_users_see_only_their_own_jobs_and_admins_see_all(store: JobStore) -> None:
    jobs, _ = servicers(store)
    with caller(ALICE):
        mine = await jobs.CreateJob(S.CreateJobRequest(config=fine_tune(project_name="alice-proj")), CTX)
        assert mine.user_id == "usr_alice"
        assert (await jobs.GetJob(S.GetJobRequest(job_id=mine.job_id), CTX)).job_id == mine.job_id
    with caller(BOB):
        theirs = await jobs.CreateJob(S.CreateJobRequest(config=fine_tune()), CTX)
        await expect("NOT_FOUND", jobs.GetJob(S.GetJobRequest(job_id=mine.job_id), CTX))
        await expect("NOT_FOUND", jobs.CancelJob(S.CancelJobRequest(job_id=mine.job_id), CTX))
        await expect("NOT_FOUND", jobs.PauseJob(S.PauseJobRequest(job_id=mine.job_id), CTX))
        await expect("NOT_FOUND", jobs.ListJobEvents(S.ListJobEventsRequest(job_id=mine.job_id), CTX))
        with pytest.raises(ForgeError) as info:
            async for _ in jobs.WatchJob(S.WatchJobRequest(job_id=mine.job_id), CTX):
                pass
        assert info.value.code.name == "NOT_FOUND"
        listed = await jobs.ListJobs(S.ListJobsRequest(), CTX)
        assert [j.job_id for j in listed.jobs] == [theirs.job_id]
        await expect("PERMISSION_DENIED", jobs.ListJobs(S.ListJobsRequest(user_id="usr_alice"), CTX))
        await expect("PERMISSION_DENIED", jobs.ListJobs(S.ListJobsRequest(user_id="*"), CTX))
    with caller(ADMIN):
        everyone = await jobs.ListJobs(S.ListJobsRequest(user_id="*", page_size=500), CTX)
        assert {mine.job_id, theirs.job_id} <= {j.job_id for j in everyone.jobs}
        alices = await jobs.ListJobs(S.ListJobsRequest(user_id="usr_alice"), CTX)
        assert [j.job_id for j in alices.jobs] == [mine.job_id]
        cancelled = await jobs.CancelJob(S.CancelJobRequest(job_id=mine.job_id), CTX)
        assert cancelled.state == S.JOB_STATE_CANCELLED


async def test_users_see_only_their_own_tasks_and_history(store: JobStore) -> None:
    _, tasks = servicers(store)
    history = TaskHistoryServicer(store)
    body = struct_pb2.Struct()
    body.update({"model": "fake", "messages": [{"role": "user", "content": "hi"}]})
    with caller(ALICE):
        mine = await tasks.CreateTask(S.CreateTaskRequest(kind="chat", payload=body), CTX)
    with caller(BOB):
        await expect("NOT_FOUND", tasks.GetTask(S.GetTaskRequest(task_id=mine.task_id), CTX))
        await expect("NOT_FOUND", tasks.GetTaskResult(S.GetTaskResultRequest(task_id=mine.task_id), CTX))
        await expect("NOT_FOUND", tasks.CancelTask(S.CancelTaskRequest(task_id=mine.task_id), CTX))
        assert not (await tasks.ListTasks(S.ListTasksRequest(), CTX)).tasks
        seen = await history.ListTaskHistory(analytics_pb2.ListTaskHistoryRequest(), CTX)
        assert seen.total == 0 and not seen.tasks
    with caller(ADMIN):
        seen = await history.ListTaskHistory(analytics_pb2.ListTaskHistoryRequest(limit=500), CTX)
        assert mine.task_id in [t.task_id for t in seen.tasks]  # admins: everyone's by default
        only_bob = await history.ListTaskHistory(analytics_pb2.ListTaskHistoryRequest(user_id="usr_bob"), CTX)
        assert only_bob.total == 0


async def test_queue_counts_by_state(store: JobStore) -> None:
    jobs, _ = servicers(store)
    before = await store.counts(Lane.TRAINING)
    with caller(ADMIN):
        queued = await jobs.CreateJob(S.CreateJobRequest(config=fine_tune()), CTX)
        await jobs.CreateJob(S.CreateJobRequest(config=fine_tune()), CTX)
        await jobs.CancelJob(S.CancelJobRequest(job_id=queued.job_id), CTX)
    after = await store.counts(Lane.TRAINING)
    assert after["total"] == before["total"] + 2
    assert after["queued"] == before["queued"] + 1 and after["cancelled"] == before["cancelled"] + 1


async def test_an_api_key_without_the_scope_cannot_queue_a_task(store: JobStore) -> None:
    _, tasks = servicers(store)
    body = struct_pb2.Struct()
    body.update({"model": "fake", "messages": [{"role": "user", "content": "hi"}]})
    narrow = Principal(user_id="usr_alice", role=Role.USER, api_key_id="key_1", scopes=frozenset({"rag"}))
    with caller(narrow):
        err = await expect("PERMISSION_DENIED", tasks.CreateTask(S.CreateTaskRequest(kind="chat", payload=body), CTX))
    assert err.reason == "SCOPE_MISSING"
    limited = Principal(user_id="usr_alice", role=Role.USER, api_key_id="key_2", allowed_models=frozenset({"gpt-4o*"}))
    with caller(limited):
        err = await expect("PERMISSION_DENIED", tasks.CreateTask(S.CreateTaskRequest(kind="chat", payload=body), CTX))
    assert err.reason == "MODEL_NOT_ALLOWED"


async def test_users_may_only_train_on_files_under_the_dataset_roots(store: JobStore, tmp_path: Path) -> None:
    jobs, _ = servicers(store, roots=(tmp_path / "allowed",))
    config = fine_tune()
    del config.dataset.examples[:]
    config.dataset.path = "/etc/passwd"
    with caller(ALICE):
        err = await expect("PERMISSION_DENIED", jobs.CreateJob(S.CreateJobRequest(config=config), CTX))
        assert err.reason == "DATASET_PATH_NOT_ALLOWED"
        config.dataset.path = str(tmp_path / "allowed" / "data.jsonl")
        assert (await jobs.CreateJob(S.CreateJobRequest(config=config), CTX)).state == S.JOB_STATE_QUEUED
    with caller(ADMIN):
        config.dataset.path = "/srv/anything.jsonl"
        assert (await jobs.CreateJob(S.CreateJobRequest(config=config), CTX)).state == S.JOB_STATE_QUEUED
