"""The retrain monitor (seed 001's Agent / Retrain) on real git repositories made by the tests: what changed since
the last completed training, the thresholds and critical paths, the plan, a RETRAIN job that extracts its dataset
from the repository's docstrings and runs to completion, force, the guard against retraining twice, bad paths,
the seed's REST paths, and, with auth on, project roots and per-user histories."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING

import aiohttp
import grpc
import pytest
import pytest_asyncio
from forge.training.v1 import training_pb2

from forge_rpc.server.app import ForgeApp
from forge_rpc.server.config import RetrainConfig
from forge_rpc.testing import running_forge
from tests.auth.conftest import Accounts, bearer, refusal, secured_config
from tests.fakes import FakeUpstream
from tests.rpc.rich_status import reason
from tests.training.conftest import TERMINAL, new_database, stub, training_config

if TYPE_CHECKING:
    from forge.training.v1.training_pb2_grpc import TrainingServiceAsyncStub as Stub

pytestmark = pytest.mark.asyncio

S = training_pb2
CRITICAL = ("src/core/**", "pyproject.toml")
SMALL = S.FineTuneConfig(max_steps=4, save_steps=2)


def write_files(root: Path, files: dict[str, str | None]) -> None:
    """Creates `root` and writes (or, for None, deletes) the files under it."""
    root.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        target = root / name
        if text is None:
            target.unlink()
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)


class Repo:
    """A git repository the test commits to, as a developer would."""

    def __init__(self, path: Path) -> None:
        self.path = path

    @classmethod
    async def create(cls, path: Path, files: dict[str, str | None] | None = None) -> Repo:
        await asyncio.to_thread(write_files, path, {})
        repo = cls(path)
        await repo.git("init", "-q", "-b", "main")
        if files:
            await repo.commit(files)
        return repo

    async def git(self, *args: str) -> str:
        identity = ("-c", "user.name=Forge Test", "-c", "user.email=test@forge.invalid", "-c", "commit.gpgsign=false")
        proc = await asyncio.create_subprocess_exec(
            "git", *identity, *args, cwd=self.path, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
        )
        out, err = await proc.communicate()
        assert proc.returncode == 0, err.decode()
        return out.decode().strip()

    async def commit(self, files: dict[str, str | None], message: str = "change") -> str:
        """Writes (or, for None, deletes) the files and commits them, and only them."""
        await asyncio.to_thread(write_files, self.path, files)
        await self.git("add", "-A", "--", *files)
        await self.git("commit", "-q", "-m", message)
        return await self.git("rev-parse", "HEAD")


PROJECT: dict[str, str | None] = {
    "README.md": "# Billing\n\n## Usage\n\nCall `billing.invoices.send` with an invoice and an address.\n",
    "billing/__init__.py": '"""The billing package: invoices and payments."""\n',
    "billing/invoices.py": (
        '"""Invoices and their totals."""\n\n\n'
        "class Invoice:\n"
        '    """An invoice: billed lines in one currency."""\n\n'
        "    def total(self) -> float:\n"
        '        """The sum of the lines, tax included."""\n'
        "        return 0.0\n\n\n"
        "def send(invoice: Invoice, to: str) -> None:\n"
        '    """Emails the invoice to the address `to`."""\n'
    ),
    "tests/test_invoices.py": 'def test_total():\n    """A test: never training data."""\n',
    "pyproject.toml": '[project]\nname = "billing"\n',
}
EXPECTED_PROMPTS = {
    "What does README.md say about Usage?",
    "What is the module `billing` for?",
    "What is the module `billing.invoices` for?",
    "What is the class `billing.invoices.Invoice` for?",
    "What does the method `billing.invoices.Invoice.total(self)` do?",
    "What does the function `billing.invoices.send(invoice: Invoice, to: str)` do?",
}


@pytest_asyncio.fixture(scope="module")
async def app(
    fake: FakeUpstream, jobs_database: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[ForgeApp]:
    tmp = tmp_path_factory.mktemp("retrain")
    (tmp / "projects").mkdir()
    retrain = RetrainConfig(files_threshold=3, critical_paths=CRITICAL, project_roots=(tmp / "projects",))
    config = dataclasses.replace(training_config(fake, jobs_database, tmp), retrain=retrain)
    async with running_forge(config) as forge:
        yield forge


@pytest_asyncio.fixture
async def s(app: ForgeApp) -> AsyncIterator[Stub]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{app.grpc_port}") as channel:
        yield stub(channel)


def root_of(app: ForgeApp) -> Path:
    return app.config.retrain.project_roots[0]


async def new_repo(app: ForgeApp, files: dict[str, str | None] | None = None) -> Repo:
    return await Repo.create(root_of(app) / f"project-{uuid.uuid4().hex[:8]}", files)


async def finished(s: Stub, job_id: str, metadata: tuple[tuple[str, str], ...] = ()) -> S.Job:
    updates = [u async for u in s.WatchJob(S.WatchJobRequest(job_id=job_id), metadata=metadata, timeout=60)]
    return updates[-1].job


async def trained(s: Stub, repo: Repo, config: S.FineTuneConfig = SMALL) -> S.Job:
    """Forces a retrain of `repo` and waits for it to complete."""
    r = await s.Retrain(S.RetrainRequest(project_path=str(repo.path), force=True, config=config))
    job = await finished(s, r.job_id)
    assert job.state == S.JOB_STATE_COMPLETED, job.error.message
    return job


def examples_of(app: ForgeApp, job_id: str) -> list[dict[str, str]]:
    jobs_dir = app.config.training.jobs_dir
    assert jobs_dir is not None
    lines = [
        line
        for name in ("train.jsonl", "eval.jsonl")
        for line in (jobs_dir / job_id / name).read_text().splitlines()
        if line.strip()
    ]
    return [json.loads(line) for line in lines]


async def test_a_project_never_trained_is_due_and_everything_counts(app: ForgeApp, s: Stub) -> None:
    repo = await new_repo(app, {"README.md": "hello\n", "src/app.py": "x = 1\n"})
    head = await repo.commit({"src/core/engine.py": "y = 2\n", "pyproject.toml": "[project]\n"})
    check = await s.CheckRetrain(S.CheckRetrainRequest(project_path=str(repo.path)))
    assert check.should_retrain and check.reason == "never trained"
    assert check.project_path == str(repo.path)
    m = check.metrics
    assert (m.commits_since_last_train, m.files_changed, m.files_threshold) == (2, 4, 3)
    assert m.critical_paths_changed and list(m.changed_critical_paths) == ["pyproject.toml", "src/core/engine.py"]
    assert (m.head_commit, m.last_trained_commit) == (head, "")
    assert not m.HasField("last_trained_at") and check.checked_at.seconds > 0
    relative = await s.CheckRetrain(S.CheckRetrainRequest(project_path=repo.path.name))  # from the first root
    assert relative.project_path == check.project_path


async def test_a_retrain_runs_on_the_repositorys_docstrings_and_resets_the_monitor(app: ForgeApp, s: Stub) -> None:
    repo = await new_repo(app, PROJECT)
    await asyncio.to_thread(write_files, repo.path, {"scratch.py": '"""Untracked notes: not part of the project."""'})
    head = await repo.git("rev-parse", "HEAD")
    r = await s.Retrain(S.RetrainRequest(project_path=str(repo.path), config=SMALL))
    assert r.triggered and r.reason == "never trained"
    assert r.job_id.startswith("agent_") and r.job.job_id == r.job_id and r.job.kind == S.JOB_KIND_RETRAIN
    assert [(p.id, p.name) for p in r.plan.plan] == [
        ("1", "extract_data"),
        ("2", "validate_data"),
        ("3", "train"),
        ("4", "evaluate"),
    ]
    assert r.plan.estimated_duration_minutes == pytest.approx(sum(p.estimated_minutes for p in r.plan.plan))
    assert [p.status for p in r.job.plan.plan] == ["pending"] * 4
    c = r.job.config
    assert c.project_path == str(repo.path) and c.project_name == repo.path.name
    assert c.base_model == "HuggingFaceTB/SmolLM2-135M-Instruct" and not c.auto_deploy and c.max_steps == 4
    job = await finished(s, r.job_id)
    assert job.state == S.JOB_STATE_COMPLETED, job.error.message
    examples = examples_of(app, r.job_id)
    assert {e["prompt"] for e in examples} == EXPECTED_PROMPTS  # tracked sources only, no tests, no scratch
    by_prompt = {e["prompt"]: e["completion"] for e in examples}
    assert by_prompt["What is the class `billing.invoices.Invoice` for?"] == "An invoice: billed lines in one currency."

    after = await s.CheckRetrain(S.CheckRetrainRequest(project_path=str(repo.path)))
    assert not after.should_retrain
    assert (after.metrics.commits_since_last_train, after.metrics.files_changed) == (0, 0)
    assert after.metrics.last_trained_commit == head and after.metrics.head_commit == head
    assert after.metrics.last_trained_at == job.finished_at

    await repo.commit({"docs/a.md": "a\n"})
    await repo.commit({"docs/b.md": "b\n"})
    below = await s.CheckRetrain(S.CheckRetrainRequest(project_path=str(repo.path)))
    assert not below.should_retrain
    assert below.reason == f"no retrain needed: 2 files changed (threshold: 3), 2 commits since {head[:12]}"
    preview = await s.Retrain(S.RetrainRequest(project_path=str(repo.path), config=SMALL))
    assert not preview.triggered and preview.reason == below.reason and preview.job_id == ""
    assert not preview.HasField("job") and len(preview.plan.plan) == 4

    await repo.commit({"docs/c.md": "c\n"})
    due = await s.CheckRetrain(S.CheckRetrainRequest(project_path=str(repo.path)))
    assert due.should_retrain and due.reason == "3 files changed (threshold: 3)"
    assert due.metrics.commits_since_last_train == 3 and not due.metrics.critical_paths_changed


async def test_a_critical_path_change_is_due_below_the_threshold(app: ForgeApp, s: Stub) -> None:
    repo = await new_repo(app, PROJECT | {"src/core/engine.py": "x = 1\n"})
    await trained(s, repo)
    await repo.commit({"src/core/engine.py": "x = 2\n"})
    check = await s.CheckRetrain(S.CheckRetrainRequest(project_path=str(repo.path)))
    assert check.should_retrain and check.reason == "critical paths changed: src/core/engine.py"
    assert check.metrics.files_changed == 1 and list(check.metrics.changed_critical_paths) == ["src/core/engine.py"]
    await repo.commit({"pyproject.toml": None})  # a deleted critical file counts too
    again = await s.CheckRetrain(S.CheckRetrainRequest(project_path=str(repo.path)))
    assert list(again.metrics.changed_critical_paths) == ["pyproject.toml", "src/core/engine.py"]


async def test_force_retrains_what_is_not_due_keeping_the_projects_last_settings(app: ForgeApp, s: Stub) -> None:
    repo = await new_repo(app, PROJECT)
    settings = S.FineTuneConfig(max_steps=4, save_steps=2, project_name="kept", lora_rank=8)
    first = await s.Retrain(S.RetrainRequest(project_path=str(repo.path), config=settings))
    assert first.plan.plan[2].estimated_minutes == 0.2  # a first run: 4 steps at 0.05 minutes
    assert (await finished(s, first.job_id)).state == S.JOB_STATE_COMPLETED
    r = await s.Retrain(S.RetrainRequest(project_path=str(repo.path), force=True, config=S.FineTuneConfig(max_steps=3)))
    assert r.triggered and r.reason.startswith("forced (no retrain needed: 0 files changed")
    c = r.job.config
    assert (c.project_name, c.lora_rank, c.max_steps, c.save_steps) == ("kept", 8, 3, 2)
    assert r.plan.plan[2].estimated_minutes == 1.0  # as long as the last run took (a few seconds: the minimum)
    assert (await finished(s, r.job_id)).state == S.JOB_STATE_COMPLETED


async def test_a_project_being_retrained_is_not_retrained_twice(app: ForgeApp, s: Stub) -> None:
    repo = await new_repo(app, PROJECT)
    slow = S.FineTuneConfig(max_steps=2000, save_steps=1000)
    r = await s.Retrain(S.RetrainRequest(project_path=str(repo.path), auto_deploy=True, config=slow))
    assert r.triggered and r.job.config.auto_deploy
    assert [p.name for p in r.plan.plan][-1] == "deploy" and r.plan.plan[-1].estimated_minutes == 5.0
    try:
        again = await s.Retrain(S.RetrainRequest(project_path=str(repo.path), config=slow))
        assert not again.triggered and again.job_id == ""
        assert again.reason.startswith(f"job {r.job_id} is already retraining this project")
    finally:
        await s.CancelJob(S.CancelJobRequest(job_id=r.job_id))
    assert (await finished(s, r.job_id)).state in TERMINAL


async def test_bad_projects_and_configs_are_refused_with_the_right_status(app: ForgeApp, s: Stub) -> None:
    root = root_of(app)
    plain = root / f"plain-{uuid.uuid4().hex[:8]}"
    await asyncio.to_thread(write_files, plain, {})
    err = await refusal(s.CheckRetrain(S.CheckRetrainRequest(project_path=str(plain))))
    assert err.code() == grpc.StatusCode.FAILED_PRECONDITION and reason(err) == "NOT_A_GIT_REPOSITORY"
    assert str(plain) in (err.details() or "")
    empty = await Repo.create(root / f"empty-{uuid.uuid4().hex[:8]}")
    err = await refusal(s.CheckRetrain(S.CheckRetrainRequest(project_path=str(empty.path))))
    assert err.code() == grpc.StatusCode.FAILED_PRECONDITION and "has no commits" in (err.details() or "")
    err = await refusal(s.CheckRetrain(S.CheckRetrainRequest(project_path=str(root / "missing"))))
    assert err.code() == grpc.StatusCode.NOT_FOUND
    await asyncio.to_thread(write_files, root, {"file.txt": "not a directory"})
    err = await refusal(s.Retrain(S.RetrainRequest(project_path=str(root / "file.txt"))))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT

    repo = await new_repo(app, PROJECT)
    with_data = S.FineTuneConfig()
    with_data.dataset.path = str(root / "data.jsonl")
    err = await refusal(s.Retrain(S.RetrainRequest(project_path=str(repo.path), config=with_data)))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and "config.dataset" in (err.details() or "")
    err = await refusal(s.Retrain(S.RetrainRequest(project_path=str(repo.path), config=S.FineTuneConfig(epochs=-1))))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and "config.epochs" in (err.details() or "")
    listed = await s.ListJobs(S.ListJobsRequest(kind=S.JOB_KIND_RETRAIN, project_name=repo.path.name))
    assert list(listed.jobs) == []  # nothing was queued by the refused calls


async def test_the_seed_rest_paths_reach_the_monitor(app: ForgeApp, s: Stub) -> None:
    repo = await new_repo(app, PROJECT)
    head = await repo.git("rev-parse", "HEAD")
    base = f"http://127.0.0.1:{app.http_port}"
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{base}/v1/retrain/monitor", params={"project_path": str(repo.path)}) as resp:
            assert resp.status == 200
            body = await resp.json()
        assert body["should_retrain"] is True and body["reason"] == "never trained"
        assert body["metrics"]["commits_since_last_train"] == 1 and body["metrics"]["head_commit"] == head
        assert body["metrics"]["files_changed"] == len(PROJECT) and body["metrics"]["critical_paths_changed"] is True
        request = {"project_path": str(repo.path), "auto_deploy": False, "force": False, "config": {"max_steps": 2000}}
        async with http.post(f"{base}/v1/retrain", json=request) as resp:
            assert resp.status == 200
            started = await resp.json()
        async with http.get(f"{base}/v1/retrain/monitor", params={"project_path": str(repo.path / "nope")}) as resp:
            assert resp.status == 404
    try:
        assert started["triggered"] is True and started["job_id"].startswith("agent_")
        first = started["plan"]["plan"][0]
        assert (first["id"], first["name"]) == ("1", "extract_data") and first["estimated_minutes"] >= 1
        assert started["plan"]["estimated_duration_minutes"] > first["estimated_minutes"]
    finally:
        await s.CancelJob(S.CancelJobRequest(job_id=started["job_id"]))
    assert (await finished(s, started["job_id"])).state in TERMINAL


# --- auth on: project roots and per-user histories ------------------------------------------------------------------


@pytest_asyncio.fixture(scope="module")
async def secured(fake: FakeUpstream, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[ForgeApp]:
    # A database of its own: this forge's worker must not claim the other forge's jobs.
    tmp = tmp_path_factory.mktemp("retrain-auth")
    (tmp / "projects").mkdir()
    base = training_config(fake, await new_database("retrain_auth"), tmp)
    config = dataclasses.replace(
        secured_config(fake),
        storage=base.storage,
        data_dir=base.data_dir,
        training=base.training,
        retrain=RetrainConfig(project_roots=(tmp / "projects",)),
    )
    async with running_forge(config) as forge:
        yield forge


@pytest_asyncio.fixture
async def accounts(secured: ForgeApp) -> AsyncIterator[Accounts]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{secured.grpc_port}") as channel:
        yield Accounts(channel, secured)


async def test_users_stay_under_the_project_roots_and_have_their_own_histories(
    accounts: Accounts, secured: ForgeApp, tmp_path: Path
) -> None:
    s = stub(accounts.channel)
    alice, bob, admin = await accounts.new_user(), await accounts.new_user(), await accounts.admin()
    outside = await Repo.create(tmp_path / "outside", PROJECT)
    for path in (outside.path, tmp_path / "does-not-exist", Path(root_of(secured)) / ".." / "outside"):
        err = await refusal(
            s.CheckRetrain(S.CheckRetrainRequest(project_path=str(path)), metadata=bearer(alice.access_token))
        )
        assert err.code() == grpc.StatusCode.PERMISSION_DENIED and reason(err) == "PROJECT_PATH_NOT_ALLOWED"
    err = await refusal(
        s.Retrain(S.RetrainRequest(project_path=str(outside.path), force=True), metadata=bearer(alice.access_token))
    )
    assert err.code() == grpc.StatusCode.PERMISSION_DENIED
    by_admin = await s.CheckRetrain(
        S.CheckRetrainRequest(project_path=str(outside.path)), metadata=bearer(admin.access_token)
    )
    assert by_admin.should_retrain  # admins may name any directory

    inside = await Repo.create(root_of(secured) / "shared", PROJECT)
    r = await s.Retrain(
        S.RetrainRequest(project_path=str(inside.path), config=SMALL), metadata=bearer(alice.access_token)
    )
    assert r.triggered and r.job.user_id == alice.user.id
    job = await finished(s, r.job_id, bearer(alice.access_token))
    assert job.state == S.JOB_STATE_COMPLETED, job.error.message
    mine = await s.CheckRetrain(S.CheckRetrainRequest(project_path="shared"), metadata=bearer(alice.access_token))
    assert not mine.should_retrain and mine.metrics.commits_since_last_train == 0
    theirs = await s.CheckRetrain(S.CheckRetrainRequest(project_path="shared"), metadata=bearer(bob.access_token))
    assert theirs.should_retrain and theirs.reason == "never trained"  # alice's training is not bob's
