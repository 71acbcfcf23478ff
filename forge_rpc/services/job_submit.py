"""Queuing a training job, the one path CreateJob and Retrain share: the FineTuneConfig checked and completed with
its defaults under the server's job policy, then a row in the durable queue owned by the caller."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from forge.training.v1 import training_pb2 as pb

from ..adapters.store.job_store import JobStore
from ..domain.jobs import JobSnapshot, Lane, new_job_id
from .context import principal
from .job_owner import caller_json
from .training_convert import checked_config

if TYPE_CHECKING:  # training.py imports this module
    from .training import JobPolicy

__all__ = ["job_spec", "queue_job"]


def job_spec(config: pb.FineTuneConfig, policy: JobPolicy) -> dict[str, Any]:
    """The spec stored with the job; INVALID_ARGUMENT naming each bad field."""
    return checked_config(
        config,
        default_runner=policy.default_runner,
        runners=set(policy.runners),
        max_example_chars=policy.max_example_chars,
    )


async def queue_job(
    store: JobStore, policy: JobPolicy, spec: dict[str, Any], *, kind: str, message: str, request_key: str | None
) -> JobSnapshot:
    """Queues a job of `kind` ("fine_tune", "retrain") for the caller; with a `request_key` they already used,
    returns that job instead."""
    who = principal.get()
    return await store.create(
        job_id=new_job_id(kind),
        lane=Lane.TRAINING,
        kind=kind,
        owner=who.user_id,
        principal=caller_json(who),
        spec=spec,
        priority=5,
        max_attempts=policy.max_attempts,
        message=message,
        request_key=request_key,
    )
