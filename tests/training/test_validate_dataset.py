"""ValidateJob on another held-out file: the trainer command runs again in evaluate mode (tests/training/workers/
evaluating.py, a deterministic measure), forge judges and reports what it measured on that file; a bad file is
refused naming the line, a file outside the dataset roots is refused to users, a trainer without the mode fails
the call with its message, and a call that ends early (a deadline, the server's timeout) stops the evaluator's
whole process group. With auth on, over gRPC and REST."""

from __future__ import annotations

import asyncio
import json
import math
import os
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import grpc
import pytest
import pytest_asyncio
from forge.training.v1 import training_pb2
from google.rpc import error_details_pb2

from forge_rpc.domain import ErrorCode, ForgeError
from forge_rpc.domain.jobs import JobSnapshot, JobState, Lane
from forge_rpc.server.app import ForgeApp
from forge_rpc.services.training_evaluate import EvaluateSettings, Evaluator
from forge_rpc.testing import running_forge
from tests.auth.conftest import Accounts, bearer, refusal
from tests.fakes import FakeUpstream
from tests.rpc.rich_status import detail, reason
from tests.training.conftest import fine_tune, pid_alive, secured_training_config, stub
from tests.training.workers.evaluating import BASE_NLL, KNOWN_NLL, UNKNOWN_NLL

pytestmark = pytest.mark.asyncio

S = training_pb2
WORKER = Path(__file__).parent / "workers" / "evaluating.py"


@pytest_asyncio.fixture(scope="module")
async def secured(
    fake: FakeUpstream, jobs_database: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[ForgeApp]:
    tmp = tmp_path_factory.mktemp("validate")
    config = secured_training_config(fake, jobs_database, tmp, worker_command=(sys.executable, str(WORKER)))
    async with running_forge(config) as app:
        yield app


@pytest_asyncio.fixture
async def accounts(secured: ForgeApp) -> AsyncIterator[Accounts]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{secured.grpc_port}") as channel:
        yield Accounts(channel, secured)


def read(path: str | Path) -> str:
    return Path(path).read_text()


def specs_left(job_dir: Path) -> list[Path]:
    return list(job_dir.glob("evaluate-*.json"))


def jsonl(path: Path, rows: list[dict[str, Any]] | list[str]) -> str:
    path.write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in rows) + "\n")
    return str(path)


async def trained(accounts: Accounts, token: str, **fields: Any) -> S.Job:
    """A job of the caller's, run to completion (by scripted.py: evaluating.py trains through it)."""
    s = stub(accounts.channel)
    job = await s.CreateJob(S.CreateJobRequest(config=fine_tune(max_steps=3, **fields)), metadata=bearer(token))
    updates = s.WatchJob(S.WatchJobRequest(job_id=job.job_id), metadata=bearer(token), timeout=60)
    final = [u async for u in updates][-1].job
    assert final.state == S.JOB_STATE_COMPLETED, final.error.message
    return final


async def test_validate_on_another_file_measures_it_judges_and_reports(accounts: Accounts) -> None:
    s, alice = stub(accounts.channel), await accounts.new_user()
    md = bearer(alice.access_token)
    job = await trained(accounts, alice.access_token)
    roots = accounts.app.config.data_dir
    # Words of the job's own examples ("What is 3 + 3?" → "6"), and one it never saw.
    known = jsonl(roots / "known.jsonl", [{"prompt": "What is 3 + 3?", "completion": "6"}, {"text": "what is"}])
    mixed = jsonl(roots / "mixed.jsonl", [{"prompt": "What is", "completion": "zebra"}])
    result = await s.ValidateJob(S.ValidateJobRequest(job_id=job.job_id, dataset_path=known), metadata=md)
    assert result.passed and result.job_id == job.job_id
    m = result.metrics
    assert m.eval_tokens == 8 and m.eval_examples == 2  # the examples counted by forge: the worker did not say
    assert m.eval_loss == pytest.approx(KNOWN_NLL) and m.perplexity == pytest.approx(math.exp(KNOWN_NLL))
    assert m.base_perplexity == pytest.approx(math.exp(BASE_NLL))
    assert m.final_loss == pytest.approx(job.loss)  # training's, not the evaluation's
    report = read(result.report_path)
    assert report == result.report_markdown and f"`{known}` (re-evaluated)" in report
    assert not specs_left(Path(job.artifacts.output_dir).parent)  # its spec is cleaned up

    other = await s.ValidateJob(S.ValidateJobRequest(job_id=job.job_id, dataset_path=mixed), metadata=md)
    assert other.metrics.eval_loss == pytest.approx((2 * KNOWN_NLL + UNKNOWN_NLL) / 3)
    assert other.passed  # exp(1.4) ≈ 4.06 beats the base model's exp(3)
    strict = await s.ValidateJob(
        S.ValidateJobRequest(job_id=job.job_id, dataset_path=mixed, max_perplexity=2.0), metadata=md
    )
    assert not strict.passed and "threshold" in strict.report_markdown
    shown = await s.GetJob(S.GetJobRequest(job_id=job.job_id), metadata=md)
    assert shown.validation.report_path == strict.report_path and not shown.validation.passed
    assert shown.validation.metrics.eval_tokens == 3

    unknown = jsonl(roots / "unknown.jsonl", [{"text": "zebra quantum"}])
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {alice.access_token}"}) as http:
        url = f"http://127.0.0.1:{accounts.app.http_port}/api/v1/jobs/{job.job_id}:validate"
        async with http.post(url, json={"dataset_path": unknown}) as resp:
            body = await resp.json()
    assert resp.status == 200, body
    assert body["passed"] is False and body["metrics"]["perplexity"] == pytest.approx(math.exp(UNKNOWN_NLL))


async def test_a_bad_or_missing_file_is_refused_naming_the_line(accounts: Accounts) -> None:
    s, alice = stub(accounts.channel), await accounts.new_user()
    md = bearer(alice.access_token)
    job = await trained(accounts, alice.access_token)
    roots = accounts.app.config.data_dir
    cases = {
        jsonl(roots / "bad-json.jsonl", ['{"text": "fine"}', "{not json"]): "line 2: not valid JSON",
        jsonl(roots / "no-answer.jsonl", ['{"text": "a"}', "", '{"messages": [{"role": "user", "content": "q"}]}']): (
            "line 3: a chat example needs an assistant message"
        ),
        jsonl(roots / "empty.jsonl", [""]): "the dataset has no examples",
        str(roots): "is not a file",
    }
    for path, problem in cases.items():
        err = await refusal(s.ValidateJob(S.ValidateJobRequest(job_id=job.job_id, dataset_path=path), metadata=md))
        assert err.code() == grpc.StatusCode.INVALID_ARGUMENT, err.details()
        violation = detail(err, error_details_pb2.BadRequest).field_violations[0]
        assert violation.field == "dataset_path" and problem in violation.description, violation.description
    missing = str(roots / "missing.jsonl")
    err = await refusal(s.ValidateJob(S.ValidateJobRequest(job_id=job.job_id, dataset_path=missing), metadata=md))
    assert err.code() == grpc.StatusCode.NOT_FOUND and missing in str(err.details())
    assert not (await s.GetJob(S.GetJobRequest(job_id=job.job_id), metadata=md)).HasField("validation")


async def test_users_name_files_under_the_dataset_roots_only(
    accounts: Accounts, tmp_path_factory: pytest.TempPathFactory
) -> None:
    s, alice, admin = stub(accounts.channel), await accounts.new_user(), await accounts.admin()
    job = await trained(accounts, alice.access_token)
    outside = jsonl(tmp_path_factory.mktemp("elsewhere") / "held.jsonl", [{"text": "what is"}])
    link = accounts.app.config.data_dir / "link.jsonl"
    link.symlink_to(outside)  # inside a root, leading out of it
    for path in (outside, str(link), str(Path(outside).parent / "missing.jsonl")):
        request = S.ValidateJobRequest(job_id=job.job_id, dataset_path=path)
        err = await refusal(s.ValidateJob(request, metadata=bearer(alice.access_token)))
        assert err.code() == grpc.StatusCode.PERMISSION_DENIED and reason(err) == "DATASET_PATH_NOT_ALLOWED"
    # Admins may name any file; another user cannot even see the job.
    ok = await s.ValidateJob(
        S.ValidateJobRequest(job_id=job.job_id, dataset_path=outside), metadata=bearer(admin.access_token)
    )
    assert ok.passed and ok.metrics.eval_tokens == 2
    bob = await accounts.new_user()
    inside = jsonl(accounts.app.config.data_dir / "bobs.jsonl", [{"text": "what is"}])
    err = await refusal(
        s.ValidateJob(S.ValidateJobRequest(job_id=job.job_id, dataset_path=inside), metadata=bearer(bob.access_token))
    )
    assert err.code() == grpc.StatusCode.NOT_FOUND


async def test_a_trainer_that_cannot_evaluate_fails_the_call_with_its_message(accounts: Accounts) -> None:
    s, alice = stub(accounts.channel), await accounts.new_user()
    md = bearer(alice.access_token)
    held = jsonl(accounts.app.config.data_dir / "held.jsonl", [{"text": "what is"}])
    unsupported = await trained(accounts, alice.access_token, project_name="no-evaluate")
    err = await refusal(s.ValidateJob(S.ValidateJobRequest(job_id=unsupported.job_id, dataset_path=held), metadata=md))
    assert err.code() == grpc.StatusCode.FAILED_PRECONDITION and reason(err) == "EVALUATION_FAILED"
    assert "this trainer has no evaluate mode" in str(err.details())
    crashed = await trained(accounts, alice.access_token, project_name="crash-evaluate")
    err = await refusal(s.ValidateJob(S.ValidateJobRequest(job_id=crashed.job_id, dataset_path=held), metadata=md))
    assert err.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "exited with code 3" in str(err.details()) and "evaluation exploded" in str(err.details())
    for job in (unsupported, crashed):
        assert not (await s.GetJob(S.GetJobRequest(job_id=job.job_id), metadata=md)).HasField("validation")


async def exits(pid: int, within: float) -> bool:
    """True once process `pid` has ended (waited on through a pidfd, not polled), False after `within` s."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    ended = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_reader(fd, ended.set)
    try:
        await asyncio.wait_for(ended.wait(), within)
        return True
    except TimeoutError:
        return False
    finally:
        loop.remove_reader(fd)
        os.close(fd)


async def test_a_call_that_ends_early_stops_the_evaluators_process_group(accounts: Accounts) -> None:
    s, alice = stub(accounts.channel), await accounts.new_user()
    job = await trained(accounts, alice.access_token, project_name="slow-evaluate")
    held = jsonl(accounts.app.config.data_dir / "held.jsonl", [{"text": "what is"}])
    request = S.ValidateJobRequest(job_id=job.job_id, dataset_path=held)
    err = await refusal(s.ValidateJob(request, metadata=bearer(alice.access_token), timeout=4))
    assert err.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    pids = [int(p) for p in read(Path(job.artifacts.output_dir) / "evaluate.pids").split()]
    for pid in pids:  # the evaluator and the child it started
        assert await exits(pid, 5.0), f"process {pid} outlived the call"
        assert not pid_alive(pid)


def snapshot(job: S.Job, spec: dict[str, Any]) -> JobSnapshot:
    now = datetime.now(UTC)
    return JobSnapshot(
        id=job.job_id, lane=Lane.TRAINING, kind="fine_tune", state=JobState.COMPLETED, owner=None, spec=spec,
        priority=5, attempt=1, max_attempts=3, pause_requested=False, cancel_requested=False, message="",
        progress=100.0, status={"artifacts": {"adapter_path": job.artifacts.adapter_path}}, result=None, error=None,
        usage=None, last_event_seq=0, created_at=now, updated_at=now, started_at=now, finished_at=now,
    )  # fmt: skip


async def test_the_server_stops_an_evaluation_that_outlives_its_timeout(accounts: Accounts) -> None:
    alice = await accounts.new_user()
    job = await trained(accounts, alice.access_token, project_name="slow-evaluate")
    held = Path(jsonl(accounts.app.config.data_dir / "held.jsonl", [{"text": "what is"}]))
    evaluator = Evaluator(EvaluateSettings((sys.executable, str(WORKER)), dict(os.environ), timeout_s=2.0))
    job_dir = Path(job.artifacts.output_dir).parent
    with pytest.raises(ForgeError) as info:
        await evaluator.evaluate(snapshot(job, {"project_name": "slow-evaluate"}), job_dir, held, 1)
    assert info.value.code is ErrorCode.DEADLINE_EXCEEDED and "longer than 2 s" in info.value.message
    pids = [int(p) for p in read(job_dir / "output" / "evaluate.pids").split()]
    for pid in pids:
        assert await exits(pid, 5.0), f"process {pid} outlived the timeout"
    assert not specs_left(job_dir)
