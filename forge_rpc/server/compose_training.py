"""Training jobs, the task queue and their runners (issue #6).

One durable queue in PostgreSQL, two lanes: fine-tuning jobs (a trainer process per job, `local` or on Ray) and
tasks (chat, batch-chat, RAG). Every replica serves the API; those with `training.worker` on also claim and run
rows, so any number of replicas share the work and none runs a row twice.
"""

from __future__ import annotations

import os
import secrets
import socket

from ..adapters.embedders import MiniLMEmbedder
from ..adapters.runners import LocalRunner, RayRunner, Runner, Workspace
from ..adapters.store.job_leases import JobLeases
from ..adapters.store.job_notify import JobSignals
from ..adapters.store.job_store import JobStore
from ..adapters.store.rag_store import RagStore
from ..domain.jobs import Lane
from ..services.job_worker import JobWorker, LaneConfig
from ..services.rag import RagServicer
from ..services.task_execution import TaskExecutor
from ..services.task_history import TaskHistoryServicer
from ..services.tasks import TasksServicer
from ..services.training import JobPolicy, TrainingJobsServicer
from ..services.training_run import TrainerSettings, TrainingExecutor
from ..services.training_validate import ValidationServicer
from .component import Component, Core, Resources
from .compose_embedders import build_embedders

__all__ = ["training_component"]


def training_component(core: Core) -> Component:
    cfg = core.config.training
    store = JobStore()  # the pool is bound at start
    signals = JobSignals()
    worker_id = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"
    leases = JobLeases(store, worker_id, cfg.lease_s)
    runners: dict[str, Runner] = {"local": LocalRunner()}
    ray = RayRunner(cfg.ray_address) if cfg.ray_address else None
    if ray is not None:
        runners["ray"] = ray
    workspace = Workspace(cfg.jobs_dir or core.config.data_dir / "jobs", cfg.max_example_chars)
    trainer = TrainingExecutor(
        workspace,
        runners,
        TrainerSettings(cfg.worker_command, cfg.worker_env, cfg.default_runner, cfg.stop_grace_s),
    )
    # RAG tasks need RagService's query; the component gets no handle on the app's servicer, so it keeps its own
    # over the same database (its local embedder loads only when a RAG task first runs).
    rag_store = RagStore()
    embedders = build_embedders(core.config, MiniLMEmbedder())
    rag = RagServicer(rag_store, embedders, core.engine, ledger=core.ledger, prices=core.prices)
    tasks = TaskExecutor(core.engine, core.ledger, timeout_s=cfg.task_timeout_s, rag_query=rag.Query)
    worker = JobWorker(
        leases,
        signals,
        {
            Lane.TRAINING: LaneConfig(cfg.max_concurrent_jobs, trainer),
            Lane.TASKS: LaneConfig(cfg.max_concurrent_tasks, tasks),
        },
        poll_s=cfg.poll_interval_s,
    )
    policy = JobPolicy(
        runners=frozenset(runners),
        default_runner=cfg.default_runner,
        max_attempts=cfg.max_attempts,
        max_example_chars=cfg.max_example_chars,
        dataset_roots=cfg.dataset_roots,
    )

    async def start(resources: Resources) -> None:
        store.bind(resources.pool)
        rag_store.bind(resources.pool)
        conninfo = resources.pool.conninfo
        assert isinstance(conninfo, str)  # create_pool() is given a URL
        await signals.start(conninfo)
        if cfg.worker:
            await worker.start()

    async def stop() -> None:
        try:
            if cfg.worker:
                await worker.stop()
        finally:
            await signals.stop()
            await embedders.close()
            if ray is not None:
                await ray.close()

    return Component(
        "training",
        {
            "forge.training.v1.TrainingService": [
                TrainingJobsServicer(store, signals, policy),
                ValidationServicer(store, workspace),
                TasksServicer(
                    store,
                    signals,
                    tasks.kinds,
                    concurrency=max(1, cfg.max_concurrent_tasks),
                    max_attempts=cfg.max_attempts,
                ),
            ],
            "forge.analytics.v1.AnalyticsService": [TaskHistoryServicer(store)],
        },
        start=start,
        stop=stop,
    )
