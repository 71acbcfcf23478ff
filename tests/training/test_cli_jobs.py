"""`forge jobs` as a user runs it, against a real `forge serve` whose trainer is the scripted worker."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from tests.e2e.forge_process import ForgeProcess
from tests.e2e.forge_process import run_forge as forge
from tests.training.conftest import new_database
from tests.training.test_durable_jobs import replica

pytestmark = pytest.mark.asyncio


@pytest_asyncio.fixture(scope="module")
async def served(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[ForgeProcess]:
    tmp = tmp_path_factory.mktemp("cli")
    process = replica(await new_database("cli"), tmp, "a", tmp / "runs.log", step_s=0.02)
    await process.start()
    yield process
    await process.stop()


async def test_create_watch_and_list(served: ForgeProcess, tmp_path: Path) -> None:
    data = tmp_path / "data.jsonl"
    data.write_text("\n".join(json.dumps({"prompt": f"q{i}", "completion": f"a{i}"}) for i in range(5)))
    code, out, err = await forge(
        "jobs", "--address", served.address, "create", "--upload", str(data), "--project", "cli-proj",
        "--max-steps", "6", "--save-steps", "3", "--watch",
    )  # fmt: skip
    assert code == 0, err
    job_id = out.strip()
    assert job_id.startswith("job_")
    assert "%" in err and "step 6/6" in err and f"{job_id} completed" in err
    code, out, _ = await forge("jobs", "--address", served.address, "list")
    assert code == 0 and job_id in out and "completed" in out and "cli-proj" in out


async def test_cancel_and_watch_a_cancelled_job(served: ForgeProcess, tmp_path: Path) -> None:
    data = tmp_path / "data.jsonl"
    data.write_text(json.dumps({"prompt": "q", "completion": "a"}) + "\n")
    code, out, err = await forge(
        "jobs", "--address", served.address, "create", "--upload", str(data), "--max-steps", "100000"
    )
    assert code == 0, err
    job_id = out.strip()
    code, out, _ = await forge("jobs", "--address", served.address, "cancel", job_id)
    assert code == 0 and job_id in out and ("cancelling" in out or "cancelled" in out)
    code, _, err = await forge("jobs", "--address", served.address, "watch", job_id)
    assert code == 1 and f"{job_id} cancelled" in err


async def test_a_bad_dataset_is_a_clear_error(served: ForgeProcess, tmp_path: Path) -> None:
    data = tmp_path / "data.jsonl"
    data.write_text('{"prompt": "q", "completion": "a"}\n{"oops": 1}\n')
    code, _, err = await forge("jobs", "--address", served.address, "create", "--upload", str(data))
    assert code == 1 and "INVALID_ARGUMENT" in err and "examples[1]" in err and "Traceback" not in err
    code, out, _ = await forge("jobs", "--help")
    assert code == 0 and "create" in out and "watch" in out and "cancel" in out


async def test_without_a_dataset_the_job_trains_on_the_projects_repository(
    served: ForgeProcess, tmp_path: Path
) -> None:
    project = tmp_path / "project"
    project.mkdir()
    (project / "billing.py").write_text(
        'def refund(invoice):\n    """Creates a credit note that points at the original invoice."""\n'
    )
    code, out, err = await forge(
        "jobs", "--address", served.address, "create", "--project-path", str(project), "--max-steps", "2", "--watch"
    )
    assert code == 0, err
    job_dir = next(p for p in served.data_dir.rglob(out.strip()) if p.is_dir())
    extracted = (job_dir / "train.jsonl").read_text() + (job_dir / "eval.jsonl").read_text()
    assert "Creates a credit note that points at the original invoice." in extracted
