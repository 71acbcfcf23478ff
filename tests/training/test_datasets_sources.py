"""The dataset sources a job can train on besides inline examples and files: a RAG namespace of the job's owner
(indexed through RagService, read from the real database, never another user's), and, with no dataset given,
examples extracted from the project directory (git's tracked files, or a walk that skips tests, virtualenvs and
hidden directories).

The workspace tests build the Workspace here, with its namespace reader over the running forge's pool, and
prepare jobs the forge queued; the last test runs a RAG-namespace job through the forge's own worker.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest
import pytest_asyncio
from forge.rag.v1 import rag_pb2, rag_pb2_grpc
from forge.training.v1 import training_pb2
from google.protobuf import json_format

from forge_rpc.adapters.runners import Workspace
from forge_rpc.adapters.store.namespace_text import NamespaceText
from forge_rpc.domain.datasets import DatasetError
from forge_rpc.server.app import ForgeApp
from forge_rpc.testing import running_forge
from tests.auth.conftest import Accounts, bearer
from tests.fakes import FakeUpstream
from tests.training.conftest import fine_tune, secured_training_config, stub
from tests.training.test_retrain import Repo, write_files

pytestmark = pytest.mark.asyncio

S = training_pb2
NOTES = [
    "Invoices are numbered per year and never reused.",
    "A refund creates a credit note that points at the original invoice.",
    "Payments in another currency are converted at the rate of the payment day.",
]


@pytest_asyncio.fixture(scope="module")
async def secured(
    fake: FakeUpstream, jobs_database: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[ForgeApp]:
    config = secured_training_config(fake, jobs_database, tmp_path_factory.mktemp("sources"))
    async with running_forge(config) as app:
        yield app


@pytest_asyncio.fixture
async def accounts(secured: ForgeApp) -> AsyncIterator[Accounts]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{secured.grpc_port}") as channel:
        yield Accounts(channel, secured)


def workspace(root: Path, app: ForgeApp | None = None) -> Workspace:
    """A Workspace as the training component builds it, reading namespaces through `app`'s pool."""
    if app is None:
        return Workspace(root, 100_000)
    assert app.pool is not None
    return Workspace(root, 100_000, NamespaceText(app.pool).read)


def spec_of(job: S.Job) -> dict[str, Any]:
    return json_format.MessageToDict(job.config, preserving_proto_field_name=True)


def examples_in(job_dir: Path) -> list[dict[str, Any]]:
    return [
        json.loads(line)
        for name in ("train.jsonl", "eval.jsonl")
        for line in (job_dir / name).read_text().splitlines()
        if line.strip()
    ]


async def index(accounts: Accounts, token: str, namespace: str, texts: list[str]) -> None:
    rag = rag_pb2_grpc.RagServiceStub(accounts.channel)
    documents = [rag_pb2.Document(document_id=f"note-{i}", content=t) for i, t in enumerate(texts)]
    done = await rag.IndexDocuments(
        rag_pb2.IndexDocumentsRequest(namespace=namespace, documents=documents), metadata=bearer(token)
    )
    assert done.document_count == len(texts)


async def rag_job(accounts: Accounts, token: str, namespace: str) -> S.Job:
    config = fine_tune(max_steps=2)
    del config.dataset.examples[:]
    config.dataset.rag_namespace = namespace
    return await stub(accounts.channel).CreateJob(S.CreateJobRequest(config=config), metadata=bearer(token))


async def test_the_owners_namespace_becomes_text_examples(
    accounts: Accounts, secured: ForgeApp, tmp_path: Path
) -> None:
    alice = await accounts.new_user()
    namespace = f"notes-{uuid.uuid4().hex[:8]}"
    await index(accounts, alice.access_token, namespace, NOTES)
    job = await rag_job(accounts, alice.access_token, namespace)
    prepared = await workspace(tmp_path, secured).prepare(job.job_id, 1, "fine_tune", spec_of(job), "")
    examples = examples_in(prepared.job_dir)
    assert sorted(examples, key=lambda e: e["text"]) == sorted(({"text": t} for t in NOTES), key=lambda e: e["text"])
    assert (prepared.train_examples, prepared.eval_examples) == (2, 1)  # the held-out split carved out


async def test_another_users_namespace_is_never_read(accounts: Accounts, secured: ForgeApp, tmp_path: Path) -> None:
    alice, bob = await accounts.new_user(), await accounts.new_user()
    namespace = f"private-{uuid.uuid4().hex[:8]}"
    await index(accounts, alice.access_token, namespace, NOTES)
    job = await rag_job(accounts, bob.access_token, namespace)
    with pytest.raises(DatasetError, match=f"RAG namespace '{namespace}' does not exist"):
        await workspace(tmp_path, secured).prepare(job.job_id, 1, "fine_tune", spec_of(job), "")
    # Bob's own namespace of the same name is his, and only his text is read.
    await index(accounts, bob.access_token, namespace, ["Bob's own note about shipping rules."])
    prepared = await workspace(tmp_path, secured).prepare(job.job_id, 2, "fine_tune", spec_of(job), "")
    assert examples_in(prepared.job_dir) == [{"text": "Bob's own note about shipping rules."}]


async def test_an_empty_namespace_or_no_reader_fails_the_dataset(
    accounts: Accounts, secured: ForgeApp, tmp_path: Path
) -> None:
    alice = await accounts.new_user()
    namespace = f"empty-{uuid.uuid4().hex[:8]}"
    rag = rag_pb2_grpc.RagServiceStub(accounts.channel)
    await rag.CreateNamespace(
        rag_pb2.CreateNamespaceRequest(namespace=rag_pb2.Namespace(name=namespace)), metadata=bearer(alice.access_token)
    )
    job = await rag_job(accounts, alice.access_token, namespace)
    with pytest.raises(DatasetError, match="has no documents"):
        await workspace(tmp_path, secured).prepare(job.job_id, 1, "fine_tune", spec_of(job), "")
    with pytest.raises(DatasetError, match="not configured on this server"):
        await workspace(tmp_path).prepare(job.job_id, 1, "fine_tune", spec_of(job), "")


async def test_a_namespace_job_runs_to_completion_through_the_worker(accounts: Accounts, secured: ForgeApp) -> None:
    alice = await accounts.new_user()
    namespace = f"run-{uuid.uuid4().hex[:8]}"
    await index(accounts, alice.access_token, namespace, NOTES)
    job = await rag_job(accounts, alice.access_token, namespace)
    s = stub(accounts.channel)
    request = S.WatchJobRequest(job_id=job.job_id)
    updates = [u async for u in s.WatchJob(request, metadata=bearer(alice.access_token), timeout=60)]
    done = updates[-1].job
    assert done.state == S.JOB_STATE_COMPLETED, done.error.message
    jobs_dir = secured.config.training.jobs_dir
    assert jobs_dir is not None
    assert {e["text"] for e in examples_in(jobs_dir / job.job_id)} == set(NOTES)


# --- extraction from the project directory ---------------------------------------------------------------------

SOURCES: dict[str, str | None] = {
    "pkg/__init__.py": '"""The package."""\n',
    "pkg/mod.py": 'def area(r: float) -> float:\n    """The area of a circle of radius r."""\n',
    "docs/guide.md": "# Guide\n\n## Setup\n\nInstall the package and run the setup command once.\n",
    "tests/test_mod.py": 'def test_area():\n    """Tests are not training data."""\n',
    ".hidden/secret.py": '"""Hidden directories are skipped."""\n',
    "venv/lib/site.py": '"""Virtualenvs are skipped."""\n',
}
PROMPTS = {
    "What is the module `pkg` for?",
    "What does the function `pkg.mod.area(r: float)` do?",
    "What does docs/guide.md say about Setup?",
}


def extracting(project: Path) -> dict[str, Any]:
    return {"base_model": "m", "project_path": str(project), "dataset": {"eval_fraction": 0.0}}


async def test_a_plain_directory_is_walked_skipping_tests_virtualenvs_and_hidden_dirs(tmp_path: Path) -> None:
    project = tmp_path / "plain"
    await asyncio.to_thread(write_files, project, SOURCES)
    prepared = await workspace(tmp_path / "jobs").prepare("job_plain", 1, "fine_tune", extracting(project), "")
    examples = examples_in(prepared.job_dir)
    assert {e["prompt"] for e in examples} == PROMPTS
    area = "What does the function `pkg.mod.area(r: float)` do?"
    assert {"prompt": area, "completion": "The area of a circle of radius r."} in examples


async def test_a_repository_gives_only_its_tracked_files_and_nothing_outside_it(tmp_path: Path) -> None:
    outside = tmp_path / "elsewhere.md"
    private = "# Private\n\n## Keys\n\nNotes that live outside the project and must not leak.\n"
    await asyncio.to_thread(write_files, tmp_path, {outside.name: private})
    repo = await Repo.create(tmp_path / "repo", SOURCES)
    await asyncio.to_thread((repo.path / "docs/link.md").symlink_to, outside)  # tracked, but leads out of the project
    await repo.git("add", "docs/link.md")
    await repo.git("commit", "-q", "-m", "link")
    await asyncio.to_thread(
        write_files, repo.path, {"pkg/untracked.py": '"""Untracked: not part of the project yet."""'}
    )
    prepared = await workspace(tmp_path / "jobs").prepare("job_repo", 1, "fine_tune", extracting(repo.path), "")
    assert {e["prompt"] for e in examples_in(prepared.job_dir)} == PROMPTS


async def test_nothing_to_extract_or_no_directory_fails_the_dataset_early(tmp_path: Path) -> None:
    bare = tmp_path / "bare"
    await asyncio.to_thread(write_files, bare, {"pkg/mod.py": "x = 1\n", "notes.txt": "not a source\n"})
    with pytest.raises(DatasetError, match=r"none could be extracted from .*bare: its 1 source files"):
        await workspace(tmp_path / "jobs").prepare("job_bare", 1, "fine_tune", extracting(bare), "")
    with pytest.raises(DatasetError, match=r"project directory .*missing does not exist"):
        await workspace(tmp_path / "jobs").prepare("job_missing", 1, "fine_tune", extracting(tmp_path / "missing"), "")
    relative = {**extracting(bare), "project_path": "."}  # never resolved against the worker's directory
    with pytest.raises(DatasetError, match="records no project directory"):
        await workspace(tmp_path / "jobs").prepare("job_relative", 1, "fine_tune", relative, "")
