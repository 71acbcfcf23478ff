"""Training tests get a database of their own per module (the queue's rows must not leak into other tests' forges,
whose workers would claim them), a forge whose trainer is tests/training/workers/scripted.py, and helpers to
follow a job."""

from __future__ import annotations

import dataclasses
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import psycopg
import pytest
import pytest_asyncio
from forge.training.v1 import training_pb2, training_pb2_grpc
from google.protobuf import struct_pb2
from psycopg.conninfo import make_conninfo

from forge_rpc.server.config import ForgeConfig
from forge_rpc.server.config.training import TrainingConfig
from tests.conftest import forge_config, storage_config
from tests.fakes import FakeUpstream

WORKER = Path(__file__).parent / "workers" / "scripted.py"

TERMINAL = {training_pb2.JOB_STATE_COMPLETED, training_pb2.JOB_STATE_FAILED, training_pb2.JOB_STATE_CANCELLED}


async def new_database(prefix: str) -> str:
    server = storage_config().database_url
    assert server is not None
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    async with await psycopg.AsyncConnection.connect(server, autocommit=True) as conn:
        await conn.execute(f'CREATE DATABASE "{name}"')
    return make_conninfo(server, dbname=name)


@pytest_asyncio.fixture(scope="module")
async def jobs_database() -> AsyncIterator[str]:
    """A fresh database for this module's forges: migrated from nothing by the first one."""
    yield await new_database("training")


def training_settings(tmp: Path, **overrides: Any) -> TrainingConfig:
    env = {**TrainingConfig().worker_env, "FORGE_TEST_STEP_S": "0.05"}
    env.update(overrides.pop("env", {}))
    settings: dict[str, Any] = {
        "worker_command": (sys.executable, str(WORKER)),
        "worker_env": env,
        "jobs_dir": tmp / "jobs",
        "lease_s": 3.0,
        "poll_interval_s": 0.2,
        "stop_grace_s": 2.0,
        "dataset_roots": (tmp,),
        **overrides,
    }
    return TrainingConfig(**settings)


def training_config(fake: FakeUpstream, database: str, tmp: Path, **overrides: Any) -> ForgeConfig:
    base = forge_config(fake, discover_ollama=False)
    return dataclasses.replace(
        base,
        storage=dataclasses.replace(base.storage, database_url=database),
        data_dir=tmp,
        training=training_settings(tmp, **overrides),
    )


def secured_training_config(fake: FakeUpstream, database: str, tmp: Path, **overrides: Any) -> ForgeConfig:
    """training_config with auth on (tests/auth's secured_config): users, admins and their isolation."""
    from tests.auth.conftest import secured_config  # the auth fixtures' module, imported only where auth is on

    base = training_config(fake, database, tmp, **overrides)
    return dataclasses.replace(
        secured_config(fake), storage=base.storage, data_dir=base.data_dir, training=base.training
    )


def examples(n: int = 12) -> list[struct_pb2.Struct]:
    out = []
    for i in range(n):
        s = struct_pb2.Struct()
        s.update({"prompt": f"What is {i} + {i}?", "completion": f"{2 * i}"})
        out.append(s)
    return out


def fine_tune(**fields: Any) -> training_pb2.FineTuneConfig:
    config = training_pb2.FineTuneConfig(base_model="HuggingFaceTB/SmolLM2-135M-Instruct", max_steps=10, save_steps=5)
    for k, v in fields.items():
        setattr(config, k, v)
    if not config.dataset.path and not config.dataset.examples:
        config.dataset.examples.extend(examples())
    return config


def stub(channel: grpc.aio.Channel) -> training_pb2_grpc.TrainingServiceAsyncStub:
    return training_pb2_grpc.TrainingServiceStub(channel)


async def watch(
    s: training_pb2_grpc.TrainingServiceAsyncStub,
    job_id: str,
    *,
    logs: bool = False,
    after: int | None = 0,
    timeout: float = 60,
) -> list[training_pb2.JobUpdate]:
    """Every update of WatchJob until the job finishes."""
    request = training_pb2.WatchJobRequest(job_id=job_id, include_logs=logs)
    if after is not None:
        request.after_sequence = after
    return [u async for u in s.WatchJob(request, timeout=timeout)]


async def wait_until(
    s: training_pb2_grpc.TrainingServiceAsyncStub, job_id: str, ready: Any, *, logs: bool = True
) -> training_pb2.JobUpdate:
    """The first update (replayed or live) for which `ready(update)` holds."""
    async for update in s.WatchJob(
        training_pb2.WatchJobRequest(job_id=job_id, after_sequence=0, include_logs=logs), timeout=60
    ):
        if ready(update):
            return update
    raise AssertionError(f"job {job_id} finished before the condition held")


def pid_alive(pid: int) -> bool:
    """True while the process exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"
