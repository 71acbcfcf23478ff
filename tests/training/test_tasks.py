"""The task queue (seeds 003 and 004): chat and batch-chat requests queued, run in priority order by the durable
queue's worker against the fake upstream, with results, cancel, watch, history and one ledger row per
generation."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import grpc
import psycopg
import pytest
import pytest_asyncio
from forge.analytics.v1 import analytics_pb2, analytics_pb2_grpc
from forge.rag.v1 import rag_pb2, rag_pb2_grpc
from forge.training.v1 import task_pb2, training_pb2
from google.protobuf import json_format, struct_pb2

from forge_rpc.server.app import ForgeApp
from forge_rpc.testing import running_forge
from tests.fakes import FakeUpstream, fake_model
from tests.training.conftest import stub, training_config

pytestmark = pytest.mark.asyncio

T = task_pb2
DONE = {T.TASK_STATE_COMPLETED, T.TASK_STATE_FAILED, T.TASK_STATE_CANCELLED}


@pytest_asyncio.fixture(scope="module")
async def app(
    fake: FakeUpstream, jobs_database: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[ForgeApp]:
    # One task at a time, so the queue's order is observable.
    config = training_config(fake, jobs_database, tmp_path_factory.mktemp("tasks"), max_concurrent_tasks=1)
    async with running_forge(config) as forge:
        yield forge


@pytest_asyncio.fixture
async def channel(app: ForgeApp) -> AsyncIterator[grpc.aio.Channel]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{app.grpc_port}") as ch:
        yield ch


def payload(data: dict[str, Any]) -> struct_pb2.Struct:
    s = struct_pb2.Struct()
    s.update(data)
    return s


def chat(prompt: str, model: str = "fake") -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": prompt}]}


async def finished(channel: grpc.aio.Channel, task_id: str) -> list[task_pb2.TaskUpdate]:
    return [u async for u in stub(channel).WatchTask(training_pb2.WatchTaskRequest(task_id=task_id), timeout=30)]


async def test_a_chat_task_is_queued_then_answered(channel: grpc.aio.Channel, jobs_database: str) -> None:
    s = stub(channel)
    # A second's latency upstream, so the watch below sees it running before it completes.
    slow = "fake/" + fake_model("gpt-fake", ttft_ms=1000)
    task = await s.CreateTask(training_pb2.CreateTaskRequest(kind="chat", payload=payload(chat("hello task", slow))))
    assert task.state == T.TASK_STATE_QUEUED and task.status == "queued" and task.task_id == task.id
    assert task.prompt == "hello task" and task.priority == 5 and task.HasField("estimated_completion")
    updates = await finished(channel, task.task_id)
    assert [u.task.status for u in updates][-1] == "completed"
    assert "running" in [u.task.status for u in updates]
    result = await s.GetTaskResult(training_pb2.GetTaskResultRequest(task_id=task.task_id))
    assert result.state == T.TASK_STATE_COMPLETED
    text = json_format.MessageToDict(result.result)["choices"][0]["message"]["content"]
    assert text.startswith("tok0") and result.usage.completion_tokens > 0
    done = await s.GetTask(training_pb2.GetTaskRequest(task_id=task.task_id))
    assert done.model_used.startswith("gpt-fake") and done.service_used == "openai" and done.tokens_used > 0
    assert done.execution_time > 0 and done.progress == 100 and done.attempt == 1
    # Exactly one usage row for the generation, under the task's id and attempt.
    async with await psycopg.AsyncConnection.connect(jobs_database) as conn:
        for _ in range(50):
            cur = await conn.execute("SELECT count(*) FROM usage_ledger WHERE request_id = %s", [f"{task.task_id}/1"])
            row = await cur.fetchone()
            if row and row[0]:
                break
            await conn.execute("SELECT pg_sleep(0.1)")  # the ledger writes in batches off the hot path
        assert row is not None and row[0] == 1


async def test_tasks_run_in_priority_order_then_submission_order(channel: grpc.aio.Channel) -> None:
    s = stub(channel)
    # Holds the only slot long enough for the others to be queued behind it.
    blocker = await s.CreateTask(
        training_pb2.CreateTaskRequest(
            kind="chat", payload=payload(chat("block", "fake/" + fake_model("gpt-fake", tokens=20, gap_ms=50)))
        )
    )
    made: dict[str, str] = {}
    for name, priority in (("low", 9), ("urgent", 0), ("normal-1", 5), ("normal-2", 5)):
        t = await s.CreateTask(
            training_pb2.CreateTaskRequest(kind="chat", payload=payload(chat(name)), priority=priority)
        )
        made[t.task_id] = name
    for task_id in [blocker.task_id, *made]:
        await finished(channel, task_id)
    tasks = [await s.GetTask(training_pb2.GetTaskRequest(task_id=i)) for i in made]
    order = [made[t.task_id] for t in sorted(tasks, key=lambda t: t.started_at.ToNanoseconds())]
    assert order == ["urgent", "normal-1", "normal-2", "low"]


async def test_a_batch_task_advances_per_request_and_keeps_each_result(channel: grpc.aio.Channel) -> None:
    s = stub(channel)
    # The second request takes a second upstream: the watch opens while the batch is part done.
    body = {"requests": [chat("one"), chat("two", "fake/" + fake_model("gpt-fake", ttft_ms=1000)), chat("3", "nope")]}
    task = await s.CreateTask(training_pb2.CreateTaskRequest(kind="chat_batch", payload=payload(body)))
    updates = await finished(channel, task.task_id)
    progress = [u.task.progress for u in updates]
    assert progress[-1] == 100 and any(0 < p < 100 for p in progress)
    reply = await s.GetTaskResult(training_pb2.GetTaskResultRequest(task_id=task.task_id))
    result = json_format.MessageToDict(reply.result)
    by_index = {int(r.get("index", 0)): r for r in result["results"]}
    assert by_index[0]["completion"]["choices"][0]["message"]["content"].startswith("tok0")
    assert by_index[2]["error"]["reason"] == "MODEL_NOT_FOUND"


async def test_cancel_stops_a_running_task(channel: grpc.aio.Channel, fake: FakeUpstream) -> None:
    s = stub(channel)
    slow = "fake/" + fake_model("gpt-fake", tokens=2, ttft_ms=20_000, tag="cancel-task")
    task = await s.CreateTask(training_pb2.CreateTaskRequest(kind="chat", payload=payload(chat("slow", slow))))
    async for update in s.WatchTask(training_pb2.WatchTaskRequest(task_id=task.task_id), timeout=30):
        if update.task.state == T.TASK_STATE_RUNNING:
            break
    cancelled = await s.CancelTask(training_pb2.CancelTaskRequest(task_id=task.task_id))
    assert cancelled.state in (T.TASK_STATE_RUNNING, T.TASK_STATE_CANCELLED)
    updates = await finished(channel, task.task_id)
    assert updates[-1].task.state == T.TASK_STATE_CANCELLED
    result = await s.GetTaskResult(training_pb2.GetTaskResultRequest(task_id=task.task_id))
    assert result.state == T.TASK_STATE_CANCELLED and not result.HasField("result")


async def test_a_failing_task_keeps_the_reason(channel: grpc.aio.Channel) -> None:
    s = stub(channel)
    task = await s.CreateTask(
        training_pb2.CreateTaskRequest(
            kind="chat", payload=payload(chat("x", "fake/" + fake_model("gpt-fake", fail=400)))
        )
    )
    updates = await finished(channel, task.task_id)
    final = updates[-1].task
    assert final.state == T.TASK_STATE_FAILED and final.error.reason not in ("", "MODEL_NOT_FOUND")
    assert final.error.message


@pytest.mark.parametrize(
    ("kind", "body", "field"),
    [
        ("automation", {"action": "process_data"}, "kind"),
        ("chat", {"messages": "not a list"}, "payload"),
        ("chat", {"model": "fake", "messages": []}, "messages"),
        ("chat_batch", {"requests": []}, "payload.requests"),
    ],
)
async def test_bad_tasks_are_refused_at_submit(
    channel: grpc.aio.Channel, kind: str, body: dict[str, Any], field: str
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub(channel).CreateTask(training_pb2.CreateTaskRequest(kind=kind, payload=payload(body)))
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field in (info.value.details() or "")


async def test_seed_004_paths_and_seed_003_history(app: ForgeApp, tmp_path: Path) -> None:
    base = f"http://127.0.0.1:{app.http_port}"
    async with aiohttp.ClientSession() as http:
        async with http.post(
            f"{base}/api/v1/tasks", json={"task_type": "chat", "payload": chat("seed 4"), "priority": 1}
        ) as resp:
            assert resp.status == 200, await resp.text()
            created = await resp.json()
        assert created["status"] == "queued" and created["task_id"].startswith("task_")
        assert "estimated_completion" in created
        task_id = created["task_id"]
        async with http.get(f"{base}/api/v1/tasks/{task_id}:watch") as resp:
            lines = [line async for line in resp.content if line.strip()]
        assert b'"completed"' in lines[-1]
        async with http.get(f"{base}/api/v1/tasks/{task_id}/result") as resp:
            result = await resp.json()
        assert result["status"] == "completed" and result["result"]["choices"]
        async with http.get(f"{base}/api/tasks/{task_id}/") as resp:
            assert (await resp.json())["prompt"] == "seed 4"
        async with http.get(f"{base}/api/tasks/history/", params={"limit": 2, "offset": 0}) as resp:
            history = await resp.json()
        assert int(history["total"]) >= 2 and len(history["tasks"]) == 2 and history["tasks"][0]["id"] == task_id
        async with http.get(f"{base}/api/tasks/history/", params={"status": "completed", "limit": 500}) as resp:
            completed = await resp.json()
        assert {t["status"] for t in completed["tasks"]} == {"completed"}
        async with http.delete(f"{base}/api/v1/tasks/{task_id}") as resp:
            assert resp.status == 400  # already finished: nothing to cancel
            assert (await resp.json())["error"]["details"][0]["reason"] == "JOB_FINISHED"


async def test_list_tasks_filters_and_history_over_grpc(channel: grpc.aio.Channel, app: ForgeApp) -> None:
    s = stub(channel)
    task = await s.CreateTask(training_pb2.CreateTaskRequest(kind="chat", payload=payload(chat("listed"))))
    await finished(channel, task.task_id)
    page = await s.ListTasks(training_pb2.ListTasksRequest(state=T.TASK_STATE_COMPLETED, kind="chat", page_size=1))
    assert len(page.tasks) == 1 and page.tasks[0].task_id == task.task_id and page.next_page_token
    analytics = analytics_pb2_grpc.AnalyticsServiceStub(channel)
    history = await analytics.ListTaskHistory(analytics_pb2.ListTaskHistoryRequest(page_size=1))
    assert history.tasks[0].task_id == task.task_id and history.total >= 1
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await s.GetTask(training_pb2.GetTaskRequest(task_id="task_nope"))
    assert info.value.code() == grpc.StatusCode.NOT_FOUND


async def test_a_rag_query_task_answers_from_the_callers_namespace(channel: grpc.aio.Channel) -> None:
    rag = rag_pb2_grpc.RagServiceStub(channel)
    namespace = f"tasks-{uuid.uuid4().hex[:8]}"
    await rag.IndexDocuments(
        rag_pb2.IndexDocumentsRequest(
            namespace=namespace,
            documents=[
                rag_pb2.Document(document_id="otters", content="Sea otters hold hands while they sleep."),
                rag_pb2.Document(document_id="forge", content="forge queues fine-tuning jobs in PostgreSQL."),
            ],
        )
    )
    body = {"query": "where does forge keep its jobs?", "namespace": namespace, "top_k": 1}
    task = await stub(channel).CreateTask(training_pb2.CreateTaskRequest(kind="rag_query", payload=payload(body)))
    assert task.prompt == body["query"]
    final = (await finished(channel, task.task_id))[-1].task
    assert final.state == T.TASK_STATE_COMPLETED, final.error.message
    result = json_format.MessageToDict(final.result)
    assert [m["document_id"] for m in result["relevant_documents"]] == ["forge"]
