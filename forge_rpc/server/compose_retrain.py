"""The retrain monitor (seed 001's Agent / Retrain): CheckRetrain and Retrain on TrainingService, over the same
job queue the training component runs (a RETRAIN job is claimed and run like any fine-tuning job)."""

from __future__ import annotations

from ..adapters.store.job_store import JobStore
from ..adapters.store.retrain_history import RetrainHistory
from ..domain.retrain import RetrainPolicy
from ..services.retrain import RetrainServicer, RetrainSettings
from ..services.training import JobPolicy
from .component import Component, Core, Resources
from .config import ForgeConfig

__all__ = ["job_policy", "retrain_component"]


def job_policy(config: ForgeConfig) -> JobPolicy:
    """How jobs are checked and queued: the runners the `training:` section configures, its dataset directories,
    and the project directories (`retrain.project_roots`) a job without a dataset may extract one from. CreateJob
    and Retrain share it."""
    cfg = config.training
    return JobPolicy(
        runners=frozenset({"local", *(["ray"] if cfg.ray_address else [])}),
        default_runner=cfg.default_runner,
        max_attempts=cfg.max_attempts,
        max_example_chars=cfg.max_example_chars,
        dataset_roots=cfg.dataset_roots,
        project_roots=config.retrain.project_roots,
    )


def retrain_component(core: Core) -> Component:
    r = core.config.retrain
    store, history = JobStore(), RetrainHistory()  # the pool is bound at start
    settings = RetrainSettings(
        RetrainPolicy(r.files_threshold, r.commits_threshold, r.critical_paths), r.project_roots, r.base_model
    )

    async def start(resources: Resources) -> None:
        store.bind(resources.pool)
        history.bind(resources.pool)

    return Component(
        "retrain",
        {"forge.training.v1.TrainingService": [RetrainServicer(store, history, job_policy(core.config), settings)]},
        start=start,
    )
