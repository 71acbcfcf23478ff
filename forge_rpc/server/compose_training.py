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
from ..adapters.ollama_deploy import OllamaDeployer
from ..adapters.runners import LocalRunner, RayRunner, Runner, Workspace
from ..adapters.store.job_leases import Claim, JobLeases
from ..adapters.store.job_notify import JobSignals
from ..adapters.store.job_store import JobStore
from ..adapters.store.namespace_text import NamespaceText
from ..adapters.store.rag_store import RagStore
from ..domain.identity import Principal
from ..domain.jobs import Lane
from ..services.job_worker import JobWorker, LaneConfig
from ..services.rag import RagServicer
from ..services.task_execution import TaskExecutor
from ..services.task_history import TaskHistoryServicer
from ..services.tasks import TasksServicer
from ..services.training import TrainingJobsServicer
from ..services.training_deploy import DeploymentServicer, DeploySettings, JobDeployer
from ..services.training_evaluate import EvaluateSettings, Evaluator
from ..services.training_run import TrainerSettings, TrainingExecutor
from ..services.training_validate import ValidationServicer
from .access import access_for, authorize
from .component import Component, Core, Resources
from .compose_embedders import build_embedders
from .compose_retrain import job_policy

__all__ = ["training_component"]

_DEPLOY = "/forge.training.v1.TrainingService/DeployJob"


def _may_deploy(who: Principal) -> None:
    # auto_deploy creates a model as the job's creator would with DeployJob, so it needs the same rights.
    authorize(who, access_for(_DEPLOY), "auto_deploy (DeployJob)")


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
    namespace_text = NamespaceText()  # the pool is bound at start
    workspace = Workspace(cfg.jobs_dir or core.config.data_dir / "jobs", cfg.max_example_chars, namespace_text.read)
    evaluator = Evaluator(
        EvaluateSettings(
            cfg.worker_command, cfg.worker_env, cfg.dataset_roots, cfg.max_example_chars, cfg.evaluate_timeout_s
        )
    )
    deployer = JobDeployer(
        store,
        workspace,
        DeploySettings(core.config.providers.ollama_host, cfg.base_ggufs),
        OllamaDeployer(),
        lambda: core.directory.refresh(force=True),
    )

    async def auto_deploy(claim: Claim) -> None:
        await deployer.auto_deploy(claim, _may_deploy)

    trainer = TrainingExecutor(
        workspace,
        runners,
        TrainerSettings(cfg.worker_command, cfg.worker_env, cfg.default_runner, cfg.stop_grace_s),
        on_completed=auto_deploy,
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
    policy = job_policy(core.config)

    async def start(resources: Resources) -> None:
        store.bind(resources.pool)
        rag_store.bind(resources.pool)
        namespace_text.bind(resources.pool)
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
                ValidationServicer(store, workspace, evaluator),
                DeploymentServicer(store, deployer),
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
