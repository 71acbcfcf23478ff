"""Fine-tuning jobs end to end in one forge: queued at once, run by a real trainer subprocess speaking the progress
protocol, watched through every state, cancelled (the whole process group gone within 5 s), paused at a
checkpoint and resumed from it, and failed early and by line for a bad dataset."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import grpc
import pytest
import pytest_asyncio
from forge.training.v1 import training_pb2

from forge_rpc.server.app import ForgeApp
from forge_rpc.testing import running_forge
from tests.fakes import FakeUpstream
from tests.rpc.rich_status import reason
from tests.training.conftest import TERMINAL, fine_tune, pid_alive, stub, training_config, wait_until, watch

pytestmark = pytest.mark.asyncio

S = training_pb2


def is_file(path: str) -> bool:
    return Path(path).is_file()


def read(path: str) -> str:
    return Path(path).read_text()


@pytest_asyncio.fixture(scope="module")
async def app(
    fake: FakeUpstream, jobs_database: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[ForgeApp]:
    tmp = tmp_path_factory.mktemp("jobs")
    config = training_config(fake, jobs_database, tmp, env={"FORGE_TEST_SPAWN_CHILD": "1"})
    async with running_forge(config) as forge:
        yield forge


@pytest_asyncio.fixture
async def channel(app: ForgeApp) -> AsyncIterator[grpc.aio.Channel]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{app.grpc_port}") as ch:
        yield ch


async def test_a_job_runs_through_every_state_and_the_watch_sees_each(channel: grpc.aio.Channel) -> None:
    s = stub(channel)
    started = time.monotonic()
    job = await s.CreateJob(S.CreateJobRequest(config=fine_tune(project_name="lifecycle")))
    assert time.monotonic() - started < 2  # answered at once, not after training
    assert job.state == S.JOB_STATE_QUEUED and job.status == "queued"
    assert job.job_id.startswith("job_") and job.message == "Fine-tuning job queued"
    assert job.config.epochs == 3 and job.config.lora_rank == 16 and job.config.runner == "local"  # defaults

    updates = await watch(s, job.job_id)
    assert updates[0].sequence == 0 and not updates[0].HasField("event")
    assert [u.sequence for u in updates] == list(range(len(updates)))
    states = [u.event.state for u in updates[1:] if u.event.type == S.JOB_EVENT_TYPE_STATE]
    assert states == [
        S.JOB_STATE_QUEUED,
        S.JOB_STATE_PREPARING,
        S.JOB_STATE_TRAINING,
        S.JOB_STATE_EVALUATING,
        S.JOB_STATE_COMPLETED,
    ]
    steps = [u.event.step for u in updates if u.event.type == S.JOB_EVENT_TYPE_PROGRESS and "loss" in u.event.data]
    assert steps == list(range(1, 11))
    losses = [u.event.loss for u in updates if u.event.type == S.JOB_EVENT_TYPE_PROGRESS and "loss" in u.event.data]
    assert losses[-1] < losses[0]
    checkpoints = [u.event.artifact for u in updates if u.event.type == S.JOB_EVENT_TYPE_CHECKPOINT]
    assert [Path(c).name for c in checkpoints] == ["step-5.json"]
    assert any(u.event.type == S.JOB_EVENT_TYPE_ATTEMPT for u in updates)
    assert not any(u.event.type == S.JOB_EVENT_TYPE_LOG for u in updates)  # logs only when asked for

    done = await s.GetJob(S.GetJobRequest(job_id=job.job_id))
    assert done.state == S.JOB_STATE_COMPLETED and done.progress == 100
    assert done.current_step == 10 and done.total_steps == 10 and done.loss == pytest.approx(0.2)
    assert done.eval_loss == pytest.approx(0.5) and done.metrics["learning_rate"] == pytest.approx(0.0002)
    assert done.attempt == 1 and not done.HasField("eta_sec")
    assert is_file(done.artifacts.adapter_path)
    assert "worker pid" in read(done.artifacts.log_path)
    assert done.HasField("started_at") and done.HasField("finished_at")


async def test_the_event_log_pages_without_gaps_and_keeps_the_trainer_output(channel: grpc.aio.Channel) -> None:
    s = stub(channel)
    job = await s.CreateJob(S.CreateJobRequest(config=fine_tune()))
    await watch(s, job.job_id)
    seen: list[training_pb2.JobEvent] = []
    token = ""
    while True:
        page = await s.ListJobEvents(S.ListJobEventsRequest(job_id=job.job_id, page_size=7, page_token=token))
        seen.extend(page.events)
        token = page.next_page_token
        if not token:
            break
    assert [e.sequence for e in seen] == list(range(1, len(seen) + 1))
    done = await s.GetJob(S.GetJobRequest(job_id=job.job_id))
    assert seen[-1].sequence == done.last_event_sequence
    logs = [e.message for e in seen if e.type == S.JOB_EVENT_TYPE_LOG]
    assert any(m.startswith("worker pid") for m in logs) and "12 training examples" not in logs
    assert any("training examples" in m for m in logs)
    only = await s.ListJobEvents(S.ListJobEventsRequest(job_id=job.job_id, type=S.JOB_EVENT_TYPE_CHECKPOINT))
    assert [e.type for e in only.events] == [S.JOB_EVENT_TYPE_CHECKPOINT]
    assert str(only.events[0].data["checkpoint"]).endswith("step-5.json")


async def test_a_trainer_error_fails_the_job_with_its_message(channel: grpc.aio.Channel) -> None:
    s = stub(channel)
    job = await s.CreateJob(S.CreateJobRequest(config=fine_tune(project_name="fail-at-3")))
    updates = await watch(s, job.job_id)
    final = updates[-1].job
    assert final.state == S.JOB_STATE_FAILED
    assert final.error.reason == "TRAINER_FAILED" and "loss diverged at step 3" in final.error.message
    assert final.error.metadata["exit_code"] == "1"
    assert final.current_step == 2  # what it logged before failing is kept


async def test_cancel_stops_the_trainer_process_group_within_five_seconds(channel: grpc.aio.Channel) -> None:
    s = stub(channel)
    job = await s.CreateJob(S.CreateJobRequest(config=fine_tune(max_steps=2000, save_steps=1000)))
    pids: dict[str, int] = {}

    def running(u: training_pb2.JobUpdate) -> bool:
        for word in ("worker", "child"):
            if u.event.message.startswith(f"{word} pid "):
                pids[word] = int(u.event.message.split()[-1])
        return u.event.type == S.JOB_EVENT_TYPE_PROGRESS and u.event.step >= 3

    await wait_until(s, job.job_id, running)
    assert pid_alive(pids["worker"]) and pid_alive(pids["child"])
    cancelling = await s.CancelJob(S.CancelJobRequest(job_id=job.job_id, reason="changed my mind"))
    assert cancelling.state in (S.JOB_STATE_CANCELLING, S.JOB_STATE_CANCELLED)
    asked = time.monotonic()
    updates = await watch(s, job.job_id, after=cancelling.last_event_sequence)
    assert updates[-1].job.state == S.JOB_STATE_CANCELLED
    while pid_alive(pids["worker"]) or pid_alive(pids["child"]):
        assert time.monotonic() - asked < 5, "the trainer's process group outlived the cancel by 5 s"
        await asyncio.sleep(0.05)
    done = await s.GetJob(S.GetJobRequest(job_id=job.job_id))
    assert done.current_step >= 3  # what it logged is kept
    events = await s.ListJobEvents(S.ListJobEventsRequest(job_id=job.job_id, type=S.JOB_EVENT_TYPE_STATE))
    assert "changed my mind" in [e.message for e in events.events]
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await s.PauseJob(S.PauseJobRequest(job_id=job.job_id))
    assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION


async def test_pause_waits_for_a_checkpoint_and_resume_continues_from_it(channel: grpc.aio.Channel) -> None:
    s = stub(channel)
    job = await s.CreateJob(S.CreateJobRequest(config=fine_tune(max_steps=40, save_steps=10)))
    await wait_until(s, job.job_id, lambda u: u.event.type == S.JOB_EVENT_TYPE_PROGRESS and u.event.step >= 2)
    pausing = await s.PauseJob(S.PauseJobRequest(job_id=job.job_id))
    assert pausing.pause_requested or pausing.state == S.JOB_STATE_PAUSED
    paused = await wait_until(s, job.job_id, lambda u: u.job.state == S.JOB_STATE_PAUSED)
    checkpoint = paused.job.artifacts.checkpoint_path
    assert checkpoint.endswith(".json") and is_file(checkpoint)
    at = (await s.GetJob(S.GetJobRequest(job_id=job.job_id))).current_step
    assert 10 <= at < 40 and not paused.job.pause_requested

    resumed = await s.ResumeJob(S.ResumeJobRequest(job_id=job.job_id))
    assert resumed.state == S.JOB_STATE_QUEUED
    updates = await watch(s, job.job_id, logs=True, after=resumed.last_event_sequence)
    final = updates[-1].job
    assert final.state == S.JOB_STATE_COMPLETED and final.current_step == 40 and final.attempt == 2
    step = int(Path(checkpoint).stem.split("-")[1])
    assert f"resuming from step {step}" in [u.event.message for u in updates]
    first = [u.event.step for u in updates if u.event.type == S.JOB_EVENT_TYPE_PROGRESS and "loss" in u.event.data]
    assert first[0] == step + 1  # the steps before the checkpoint were not trained again


async def test_queued_jobs_pause_and_cancel_at_once(channel: grpc.aio.Channel, app: ForgeApp) -> None:
    s = stub(channel)
    # The one trainer slot is busy with a long job, so the next one stays queued.
    long = await s.CreateJob(S.CreateJobRequest(config=fine_tune(max_steps=2000, save_steps=1000)))
    await wait_until(s, long.job_id, lambda u: u.event.type == S.JOB_EVENT_TYPE_PROGRESS)
    queued = await s.CreateJob(S.CreateJobRequest(config=fine_tune()))
    paused = await s.PauseJob(S.PauseJobRequest(job_id=queued.job_id))
    assert paused.state == S.JOB_STATE_PAUSED
    cancelled = await s.CancelJob(S.CancelJobRequest(job_id=queued.job_id))
    assert cancelled.state == S.JOB_STATE_CANCELLED and cancelled.HasField("finished_at")
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await s.ResumeJob(S.ResumeJobRequest(job_id=queued.job_id))
    assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    await s.CancelJob(S.CancelJobRequest(job_id=long.job_id))
    assert (await watch(s, long.job_id))[-1].job.state in TERMINAL


async def test_a_bad_inline_example_is_refused_naming_it(channel: grpc.aio.Channel) -> None:
    config = fine_tune()
    del config.dataset.examples[:]
    config.dataset.examples.add().update({"prompt": "fine", "completion": "ok"})
    config.dataset.examples.add().update({"question": "no shape"})
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub(channel).CreateJob(S.CreateJobRequest(config=config))
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "config.dataset.examples[1]" in (info.value.details() or "")
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub(channel).CreateJob(S.CreateJobRequest(config=S.FineTuneConfig(dataset=config.dataset)))
    assert "config.base_model" in (info.value.details() or "")


@pytest.mark.parametrize(
    ("content", "line", "problem"),
    [
        ('{"prompt": "a", "completion": "b"}\n{"prompt": "a", "completion": "b"\n', "2", "not valid JSON"),
        ('{"prompt": "a", "completion": "b"}\n\n["a list"]\n', "3", "JSON object"),
        ("\n\n", "", "no examples"),
        ('{"text": "' + "x" * 200_001 + '"}\n', "1", "too long"),
        ('{"messages": [{"role": "user", "content": "hi"}]}\n', "1", "assistant message"),
    ],
)
async def test_a_malformed_dataset_file_fails_the_job_early_naming_the_line(
    channel: grpc.aio.Channel, tmp_path: Path, content: str, line: str, problem: str
) -> None:
    data = tmp_path / "data.jsonl"
    data.write_text(content)
    s = stub(channel)
    config = fine_tune()
    del config.dataset.examples[:]
    config.dataset.path = str(data)
    job = await s.CreateJob(S.CreateJobRequest(config=config))
    updates = await watch(s, job.job_id, logs=True)
    final = updates[-1].job
    assert final.state == S.JOB_STATE_FAILED and final.error.reason == "DATASET_INVALID"
    assert problem in final.error.message and str(data) in final.error.message
    assert final.error.metadata.get("line", "") == line
    assert not any(u.event.message.startswith("worker pid") for u in updates)  # no trainer was started


async def test_the_seed_paths_queue_and_show_a_job(app: ForgeApp) -> None:
    body = {
        "project_name": "my-project",
        "base_model": "unsloth/Llama-3.2-3B-Instruct",
        "epochs": 3,
        "learning_rate": 0.0002,
        "rank": 64,
        "use_pissa": True,
        "max_steps": 3,
        "dataset": {"examples": [{"prompt": "hi", "completion": "hello"}] * 3},
    }
    base = f"http://127.0.0.1:{app.http_port}"
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{base}/v1/fine-tune", json=body) as resp:
            assert resp.status == 200, await resp.text()
            created = await resp.json()
        assert created["status"] == "queued" and created["message"] == "Fine-tuning job queued"
        assert created["config"]["lora_rank"] == 64 and created["config"]["use_pissa"] is True
        async with http.get(f"{base}/status/{created['job_id']}") as resp:
            shown = await resp.json()
        assert (shown["job_id"] == created["job_id"] and "progress" in shown) or shown["status"] == "queued"
        async with http.get(f"{base}/status/job_nope") as resp:
            assert resp.status == 404
        async with http.post(f"{base}/v1/fine-tune", json={"epochs": 1}) as resp:
            assert resp.status == 400
            assert "base_model" in (await resp.json())["detail"]


async def test_a_retried_create_with_the_same_request_id_returns_the_first_job(channel: grpc.aio.Channel) -> None:
    s = stub(channel)
    first = await s.CreateJob(S.CreateJobRequest(config=fine_tune(max_steps=2), request_id="create-once"))
    again = await s.CreateJob(S.CreateJobRequest(config=fine_tune(max_steps=2), request_id="create-once"))
    assert again.job_id == first.job_id
    await watch(s, first.job_id)


async def test_list_jobs_pages_newest_first_and_filters_by_state(channel: grpc.aio.Channel) -> None:
    s = stub(channel)
    made = [(await s.CreateJob(S.CreateJobRequest(config=fine_tune(max_steps=1, project_name="listing")))).job_id]
    made.append((await s.CreateJob(S.CreateJobRequest(config=fine_tune(max_steps=1, project_name="listing")))).job_id)
    for job_id in made:
        await watch(s, job_id)
    page = await s.ListJobs(S.ListJobsRequest(project_name="listing", page_size=1))
    assert [j.job_id for j in page.jobs] == [made[1]] and page.next_page_token
    rest = await s.ListJobs(S.ListJobsRequest(project_name="listing", page_token=page.next_page_token))
    assert [j.job_id for j in rest.jobs] == [made[0]] and not rest.next_page_token
    failed = await s.ListJobs(S.ListJobsRequest(project_name="listing", state=S.JOB_STATE_FAILED))
    assert not failed.jobs


async def test_unknown_job_is_not_found(channel: grpc.aio.Channel) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub(channel).GetJob(S.GetJobRequest(job_id="job_missing"))
    assert info.value.code() == grpc.StatusCode.NOT_FOUND
    assert reason(info.value) == "NOT_FOUND"


async def test_validate_judges_a_completed_job_and_writes_the_report(channel: grpc.aio.Channel, app: ForgeApp) -> None:
    s = stub(channel)
    job = await s.CreateJob(S.CreateJobRequest(config=fine_tune(max_steps=3)))
    await watch(s, job.job_id)
    result = await s.ValidateJob(S.ValidateJobRequest(job_id=job.job_id))
    assert result.passed and result.job_id == job.job_id  # perplexity 1.65 against the base model's 40
    assert result.metrics.perplexity == pytest.approx(1.6487) and result.metrics.base_perplexity == 40
    assert result.metrics.final_loss == pytest.approx(0.6667) and result.metrics.eval_tokens == 120
    assert "# Validation of" in result.report_markdown and read(result.report_path) == result.report_markdown
    strict = await s.ValidateJob(S.ValidateJobRequest(job_id=job.job_id, max_perplexity=1.5))
    assert not strict.passed and "threshold" in read(strict.report_path)
    shown = await s.GetJob(S.GetJobRequest(job_id=job.job_id))
    assert shown.validation.report_path == strict.report_path and not shown.validation.passed
    async with aiohttp.ClientSession() as http:
        async with http.post(f"http://127.0.0.1:{app.http_port}/validate/{job.job_id}", json={}) as resp:
            seed = await resp.json()
    assert seed["passed"] is True and seed["metrics"]["perplexity"] > 0 and seed["report_path"]

    failed = await s.CreateJob(S.CreateJobRequest(config=fine_tune(project_name="fail-at-1")))
    await watch(s, failed.job_id)
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await s.ValidateJob(S.ValidateJobRequest(job_id=failed.job_id))
    assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION and reason(info.value) == "JOB_NOT_COMPLETED"
