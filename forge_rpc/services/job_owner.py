"""Who owns a job or task, whose rows a caller may see, and the creator's rights kept with a task for when it runs.

A user sees only their own rows; admins see everyone's. With auth off every caller is the local operator (an admin
without a user id) and rows are owned by nobody.
"""

from __future__ import annotations

from typing import Any

from ..adapters.store.job_store import JobStore, OwnerScope
from ..domain import FieldViolation, InvalidArgument, NotFound, PermissionDenied
from ..domain.identity import Principal, Role
from ..domain.jobs import JobSnapshot, Lane
from .context import principal

__all__ = ["caller_json", "list_scope", "principal_from_json", "training_job", "visible"]


def caller_json(who: Principal) -> dict[str, Any]:
    """What a task's creator may do, kept with the row (never a secret: ids, role, scopes, model globs)."""
    return {
        "user_id": who.user_id,
        "role": who.role.value,
        "api_key_id": who.api_key_id,
        "username": who.username,
        "scopes": sorted(who.scopes),
        "allowed_models": sorted(who.allowed_models),
    }


def principal_from_json(data: dict[str, Any]) -> Principal:
    role = data.get("role") or Role.ADMIN.value  # rows from before auth: the local operator made them
    return Principal(
        user_id=data.get("user_id"),
        role=Role(role),
        api_key_id=data.get("api_key_id"),
        username=data.get("username"),
        scopes=frozenset(data.get("scopes") or ()),
        allowed_models=frozenset(data.get("allowed_models") or ()),
    )


def visible(job: JobSnapshot | None, what: str, ident: str) -> JobSnapshot:
    """The row if the caller may see it; NOT_FOUND otherwise (another user's row is not even said to exist)."""
    if job is None or not principal.get().owns(job.owner):
        raise NotFound(what, ident)
    return job


async def training_job(store: JobStore, job_id: str) -> JobSnapshot:
    """The training job `job_id` names, as the caller may see it (the RPCs that take a job id share this)."""
    if not job_id:
        raise InvalidArgument([FieldViolation("job_id", "required")])
    job = visible(await store.get(job_id), "job", job_id)
    if job.lane is not Lane.TRAINING:
        raise InvalidArgument([FieldViolation("job_id", f"{job_id!r} is a task, not a job")])
    return job


def list_scope(user_id: str, *, everyone_by_default: bool = False) -> OwnerScope:
    """Whose rows a List reaches: the caller's own; for admins, the user named, or everyone's with "*" (or, where
    `everyone_by_default`, when none is named)."""
    who = principal.get()
    if user_id and user_id != who.user_id and not who.is_admin:
        raise PermissionDenied("only admins may list another user's jobs and tasks", "NOT_OWNER")
    if user_id == "*" or (not user_id and everyone_by_default and who.is_admin):
        return OwnerScope(everyone=True)
    return OwnerScope(owner=user_id or who.user_id)
