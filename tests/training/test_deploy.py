"""DeployJob end to end through forge's gRPC and REST, against the fake Ollama: a completed job's adapter (a real
PEFT adapter written by tests/training/workers/lora_writer.py for a tiny llama) becomes GGUF, its blobs are
uploaded once by digest, the model is created, then listed by ModelsService and chatted with through forge; the
merged form is what PEFT would merge (llama.cpp says so); auto_deploy runs after completion and a failed one
leaves the job completed; bad requests get the right status."""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import gguf
import grpc
import pytest
import pytest_asyncio
from forge.chat.v1 import chat_pb2, chat_pb2_grpc
from forge.models.v1 import models_pb2, models_pb2_grpc
from forge.training.v1 import training_pb2, training_pb2_grpc
from google.rpc import error_details_pb2

from forge_rpc.server.app import ForgeApp
from forge_rpc.server.config import ForgeConfig
from forge_rpc.testing import running_forge
from tests.auth.conftest import Accounts, bearer, secured_config
from tests.fakes import FakeUpstream
from tests.rpc.rich_status import detail, reason
from tests.training.conftest import fine_tune, new_database, stub, training_config, watch
from tests.training.workers.tiny_llama import (
    hf_forward,
    llama_logits,
    merged,
    random_weights,
    write_adapter,
    write_gguf,
)

pytestmark = pytest.mark.asyncio

S = training_pb2
ROOT = Path(__file__).resolve().parents[2]
LORA_WORKER = Path(__file__).parent / "workers" / "lora_writer.py"
BASE = "tiny/llama"


def sha(path: Path) -> str:
    return f"sha256:{hashlib.sha256(path.read_bytes()).hexdigest()}"


def deploy_config(fake: FakeUpstream, database: str, tmp: Path) -> ForgeConfig:
    base = write_gguf(tmp / "tiny.gguf", random_weights(seed=0))
    config = training_config(
        fake,
        database,
        tmp,
        worker_command=(sys.executable, str(LORA_WORKER)),
        env={"PYTHONPATH": str(ROOT)},
        base_ggufs={BASE: base},
    )
    # Deployed models must show up in forge's listing: Ollama (the fake) is discovered.
    return dataclasses.replace(config, providers=dataclasses.replace(config.providers, discover_ollama=True))


@pytest_asyncio.fixture(scope="module")
async def app(
    fake: FakeUpstream, jobs_database: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[ForgeApp]:
    await fake.reset()
    async with running_forge(deploy_config(fake, jobs_database, tmp_path_factory.mktemp("deploy"))) as forge:
        yield forge
    await fake.reset()  # the models created here must not show up in other modules' listings


@pytest_asyncio.fixture
async def channel(app: ForgeApp) -> AsyncIterator[grpc.aio.Channel]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{app.grpc_port}") as ch:
        yield ch


async def completed(s: training_pb2_grpc.TrainingServiceAsyncStub, **fields: object) -> training_pb2.Job:
    config = fine_tune(base_model=BASE, max_steps=2, lora_rank=4)
    for key, value in fields.items():
        setattr(config, key, value)
    job = await s.CreateJob(S.CreateJobRequest(config=config))
    final = (await watch(s, job.job_id))[-1].job
    assert final.state == S.JOB_STATE_COMPLETED, final.error.message
    return final


async def refused(call: object) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call  # type: ignore[misc]
    return info.value


async def test_a_deployed_job_is_an_ollama_model_forge_lists_and_chats_with(
    channel: grpc.aio.Channel, app: ForgeApp, fake: FakeUpstream
) -> None:
    s = stub(channel)
    job = await completed(s, project_name="Deploy Demo")
    deployment = await s.DeployJob(S.DeployJobRequest(job_id=job.job_id))
    base, adapter = app.config.training.base_ggufs[BASE], Path(deployment.gguf_path)
    assert deployment.success and deployment.job_id == job.job_id and deployment.model_name == "deploy-demo:latest"
    assert deployment.ollama_host == fake.base_url and deployment.deployed_at.seconds > 0
    assert deployment.modelfile == f"FROM {base}\nADAPTER {adapter}\n"
    assert adapter.parent == Path(job.artifacts.output_dir) / "deploy" and adapter.name == "adapter-q8_0.gguf"
    assert gguf.GGUFReader(adapter).fields["general.type"].contents() == "adapter"
    (created,) = [r for r in await fake.requests() if r["path"] == "/api/create" and r["model"] == "deploy-demo:latest"]
    assert created["body"]["files"] == {"tiny.gguf": sha(base)}
    assert created["body"]["adapters"] == {"adapter-q8_0.gguf": sha(adapter)}

    listed = await models_pb2_grpc.ModelsServiceStub(channel).ListModels(
        models_pb2.ListModelsRequest(provider="ollama")
    )
    assert "deploy-demo:latest" in [m.name for m in listed.models]
    chat = chat_pb2.ChatRequest(model="deploy-demo:latest", messages=[chat_pb2.Message(role="user", content="hi")])
    reply = await chat_pb2_grpc.ChatServiceStub(channel).CreateChatCompletion(
        chat_pb2.CreateChatCompletionRequest(chat=chat)
    )
    assert reply.choices[0].message.content == "".join(f"tok{i} " for i in range(8))

    shown = await s.GetJob(S.GetJobRequest(job_id=job.job_id))
    assert shown.deployment.model_name == "deploy-demo:latest" and shown.deployment.gguf_path == str(adapter)
    artifacts = await s.ListJobEvents(S.ListJobEventsRequest(job_id=job.job_id, type=S.JOB_EVENT_TYPE_ARTIFACT))
    assert artifacts.events[-1].artifact == str(adapter) and "deployed" in artifacts.events[-1].message

    again = await s.DeployJob(S.DeployJobRequest(job_id=job.job_id, model_name="demo/tiny:v2", quantization="f32"))
    assert again.model_name == "demo/tiny:v2" and Path(again.gguf_path).name == "adapter-f32.gguf"
    uploads = [
        r["body"]["sha256"] for r in await fake.requests() if r["method"] == "POST" and "/api/blobs/" in r["path"]
    ]
    assert uploads.count(sha(base)) == 1  # the base GGUF is sent once; the server has it the second time
    assert sha(Path(again.gguf_path)) in uploads
    assert (await s.GetJob(S.GetJobRequest(job_id=job.job_id))).deployment.model_name == "demo/tiny:v2"


@pytest.mark.skipif(importlib.util.find_spec("llama_cpp") is None, reason="llama-cpp-python missing")
async def test_a_merged_deployment_over_rest_is_the_peft_merge(
    channel: grpc.aio.Channel, app: ForgeApp, fake: FakeUpstream, tmp_path: Path
) -> None:
    job = await completed(stub(channel), project_name="merged")
    body = {"merge": True, "quantization": "f16", "model_name": "tiny-merged"}
    async with aiohttp.ClientSession() as http:
        async with http.post(f"http://127.0.0.1:{app.http_port}/deploy/{job.job_id}", json=body) as resp:
            assert resp.status == 200, await resp.text()
            shown = await resp.json()
        async with http.post(f"http://127.0.0.1:{app.http_port}/deploy/job_nope", json={}) as resp:
            assert resp.status == 404
        colon = f"http://127.0.0.1:{app.http_port}/api/v1/jobs/{job.job_id}:deploy"
        async with http.post(colon, json={"quantization": "q2_k"}) as resp:
            assert resp.status == 400 and "quantization" in (await resp.json())["detail"]
    assert shown["job_id"] == job.job_id and shown["success"] is True and shown["model_name"] == "tiny-merged:latest"
    model = Path(shown["gguf_path"])
    assert model.name == "model-f16.gguf" and shown["modelfile"] == f"FROM {model}\n"
    (created,) = [r for r in await fake.requests() if r["path"] == "/api/create" and r["model"] == "tiny-merged:latest"]
    assert created["body"]["files"] == {"model-f16.gguf": sha(model)} and "adapters" not in created["body"]
    # The worker's adapter is seeded by the job's seed (42): the same one, rebuilt here, says what the merge must be.
    pairs = write_adapter(tmp_path / "same", rank=4, alpha=8, seed=42)
    tokens = [3, 141, 59, 26, 5]
    want = hf_forward(merged(random_weights(seed=0), pairs, 2.0), tokens)
    got = llama_logits(model, tokens)
    assert abs(got - want).max() < 0.05


async def test_a_pissa_job_is_deployed_merged(channel: grpc.aio.Channel) -> None:
    s = stub(channel)
    job = await completed(s, use_pissa=True, output_model_name="pissa-tiny")
    deployment = await s.DeployJob(S.DeployJobRequest(job_id=job.job_id))
    assert deployment.model_name == "pissa-tiny:latest" and Path(deployment.gguf_path).name == "model-q8_0.gguf"
    assert deployment.modelfile == f"FROM {deployment.gguf_path}\n"


async def test_bad_deployments_get_clear_errors(channel: grpc.aio.Channel, app: ForgeApp) -> None:
    s = stub(channel)
    err = await refused(s.DeployJob(S.DeployJobRequest(job_id="job_nope")))
    assert err.code() == grpc.StatusCode.NOT_FOUND
    err = await refused(s.DeployJob(S.DeployJobRequest()))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    job = await completed(s)
    bad = S.DeployJobRequest(job_id=job.job_id, model_name="Bad Name!", quantization="q4_k", ollama_host="ftp://x")
    err = await refused(s.DeployJob(bad))
    fields = {v.field for v in detail(err, error_details_pb2.BadRequest).field_violations}
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and fields == {"model_name", "quantization", "ollama_host"}
    err = await refused(s.DeployJob(S.DeployJobRequest(job_id=job.job_id, ollama_host="127.0.0.1:9")))
    assert err.code() == grpc.StatusCode.UNAVAILABLE and "127.0.0.1:9" in (err.details() or "")
    err = await refused(s.DeployJob(S.DeployJobRequest(job_id=job.job_id, model_name="fail-create-x")))
    assert err.code() == grpc.StatusCode.FAILED_PRECONDITION and reason(err) == "OLLAMA_CREATE_FAILED"
    assert not (await s.GetJob(S.GetJobRequest(job_id=job.job_id))).HasField("deployment")  # nothing was deployed

    missing = S.FineTuneConfig(base_model=BASE)
    missing.dataset.path = str(app.config.data_dir / "none.jsonl")
    failed = await s.CreateJob(S.CreateJobRequest(config=missing))
    assert (await watch(s, failed.job_id))[-1].job.state == S.JOB_STATE_FAILED
    err = await refused(s.DeployJob(S.DeployJobRequest(job_id=failed.job_id)))
    assert err.code() == grpc.StatusCode.FAILED_PRECONDITION and reason(err) == "JOB_NOT_COMPLETED"
    pissa = await completed(s, project_name="unconverted-pissa")
    err = await refused(s.DeployJob(S.DeployJobRequest(job_id=pissa.job_id)))
    assert reason(err) == "ADAPTER_INVALID" and "converted to plain LoRA" in (err.details() or "")
    unknown = await completed(s, base_model="org/no-gguf")
    err = await refused(s.DeployJob(S.DeployJobRequest(job_id=unknown.job_id)))
    assert err.code() == grpc.StatusCode.FAILED_PRECONDITION and reason(err) == "BASE_GGUF_MISSING"
    err = await refused(s.CreateJob(S.CreateJobRequest(config=fine_tune(output_model_name="no spaces allowed"))))
    violations = detail(err, error_details_pb2.BadRequest).field_violations
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and [v.field for v in violations] == [
        "config.output_model_name"
    ]


async def test_auto_deploy_runs_after_completion_and_a_failure_leaves_the_job_completed(
    channel: grpc.aio.Channel,
) -> None:
    s = stub(channel)
    made = []
    for name in ("auto-tiny", "fail-create-auto"):
        config = fine_tune(base_model=BASE, max_steps=2, auto_deploy=True, output_model_name=name)
        made.append((await s.CreateJob(S.CreateJobRequest(config=config))).job_id)
    # One trainer slot, claimed in submission order: a worker keeps its slot until its auto-deploy is recorded,
    # so once a plain job queued after them has started, both deployments are in.
    after = await completed(s)
    good, bad = [await s.GetJob(S.GetJobRequest(job_id=j)) for j in made]
    assert good.state == bad.state == S.JOB_STATE_COMPLETED
    assert good.deployment.success and good.deployment.model_name == "auto-tiny:latest"
    assert not bad.deployment.success and "auto_deploy failed" in bad.deployment.message
    errors = await s.ListJobEvents(S.ListJobEventsRequest(job_id=bad.job_id, type=S.JOB_EVENT_TYPE_ERROR))
    assert [e.state for e in errors.events] == [S.JOB_STATE_COMPLETED] and "unsupported architecture" in errors.events[
        0
    ].message
    started = await s.ListJobEvents(S.ListJobEventsRequest(job_id=after.job_id, type=S.JOB_EVENT_TYPE_ATTEMPT))
    assert started.events[0].time.ToDatetime() >= good.deployment.deployed_at.ToDatetime()


@pytest_asyncio.fixture(scope="module")
async def secured(fake: FakeUpstream, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Accounts]:
    # A database of its own: this forge's worker must not claim the other forge's jobs (nor they its).
    base = deploy_config(fake, await new_database("deploy_auth"), tmp_path_factory.mktemp("deploy-auth"))
    config = dataclasses.replace(
        secured_config(fake), storage=base.storage, data_dir=base.data_dir, training=base.training
    )
    async with (
        running_forge(config) as forge,
        grpc.aio.insecure_channel(f"127.0.0.1:{forge.grpc_port}") as ch,
    ):
        yield Accounts(ch, forge)


async def test_only_admins_deploy_and_a_users_auto_deploy_is_refused(secured: Accounts) -> None:
    s = stub(secured.channel)
    alice, admin = await secured.new_user(), await secured.admin()
    as_alice, as_admin = bearer(alice.access_token), bearer(admin.access_token)
    config = fine_tune(base_model=BASE, max_steps=2, auto_deploy=True, output_model_name="alice-auto")
    job = await s.CreateJob(S.CreateJobRequest(config=config), metadata=as_alice)
    plain = await s.CreateJob(S.CreateJobRequest(config=fine_tune(base_model=BASE, max_steps=2)), metadata=as_alice)
    await watch_as(s, plain.job_id, as_alice)  # queued after it: the auto-deploy has been tried by now
    shown = await s.GetJob(S.GetJobRequest(job_id=job.job_id), metadata=as_alice)
    assert shown.state == S.JOB_STATE_COMPLETED and not shown.deployment.success
    assert "needs the admin role" in shown.deployment.message
    err = await refused(s.DeployJob(S.DeployJobRequest(job_id=job.job_id), metadata=as_alice))
    assert err.code() == grpc.StatusCode.PERMISSION_DENIED
    deployed = await s.DeployJob(S.DeployJobRequest(job_id=job.job_id), metadata=as_admin)  # admins see every job
    assert deployed.success and deployed.model_name == "alice-auto:latest"
    assert (await s.GetJob(S.GetJobRequest(job_id=job.job_id), metadata=as_alice)).deployment.success


async def watch_as(s: training_pb2_grpc.TrainingServiceAsyncStub, job_id: str, md: tuple[tuple[str, str], ...]) -> None:
    async for update in s.WatchJob(S.WatchJobRequest(job_id=job_id), metadata=md, timeout=60):
        last = update.job
    assert last.state == S.JOB_STATE_COMPLETED
