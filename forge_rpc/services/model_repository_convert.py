"""The model repository's request checks and proto conversion: bad input is named field by field, never INTERNAL.

The limits match the CHECK constraints of migration 0003, which stay as a backstop for other writers.
"""

from __future__ import annotations

from collections.abc import Sequence

from forge.models.v1 import models_pb2

from ..adapters.store.model_repository import Changes, ModelStats, RepositoryRow
from ..domain import FieldViolation, InvalidArgument
from .timestamps import timestamp

__all__ = [
    "MAX_DESCRIPTION",
    "MAX_NAME",
    "MAX_TAG",
    "MAX_TAGS",
    "create_changes",
    "name_problem",
    "repository_message",
    "require_name",
    "update_changes",
]

MAX_NAME = 256
MAX_DESCRIPTION = 4000
MAX_TAGS = 32
MAX_TAG = 64


def name_problem(name: str) -> str | None:
    """Why `name` cannot be a repository entry, or None. Model names never hold spaces (Ollama's `llama3.2:1b`,
    `hf.co/org/repo:Q4_K_M`, OpenAI ids), so whitespace here is a client bug, not a name."""
    if not name:
        return "required"
    if len(name) > MAX_NAME:
        return f"at most {MAX_NAME} characters"
    if any(c.isspace() or not c.isprintable() for c in name):
        return "must not contain whitespace or control characters"
    return None


def require_name(name: str, path: str = "name") -> str:
    problem = name_problem(name)
    if problem is not None:
        raise InvalidArgument([FieldViolation(path, problem)])
    return name


def _tags(tags: Sequence[str], path: str, bad: list[FieldViolation]) -> list[str]:
    out: list[str] = []
    for i, tag in enumerate(tags):
        if not tag.strip():
            bad.append(FieldViolation(f"{path}[{i}]", "must not be empty"))
        elif len(tag) > MAX_TAG:
            bad.append(FieldViolation(f"{path}[{i}]", f"at most {MAX_TAG} characters"))
        elif not tag.isprintable():
            bad.append(FieldViolation(f"{path}[{i}]", "must not contain control characters"))
        elif tag not in out:  # a repeated tag says nothing more: keep the first
            out.append(tag)
    if len(out) > MAX_TAGS:
        bad.append(FieldViolation(path, f"at most {MAX_TAGS} distinct tags"))
    return out


def _description(text: str, path: str, bad: list[FieldViolation]) -> str:
    if len(text) > MAX_DESCRIPTION:
        bad.append(FieldViolation(path, f"at most {MAX_DESCRIPTION} characters"))
    return text


def create_changes(model: models_pb2.RepositoryModel) -> Changes:
    """The preferences of a new entry; output-only fields (created_at, provider, available, stats) are ignored."""
    bad: list[FieldViolation] = []
    problem = name_problem(model.name)
    if problem is not None:
        bad.append(FieldViolation("model.name", problem))
    changes = Changes(
        description=_description(model.description, "model.description", bad),
        is_favorite=model.is_favorite,
        is_default=model.is_default,
        tags=_tags(model.tags, "model.tags", bad),
    )
    if bad:
        raise InvalidArgument(bad)
    return changes


def update_changes(request: models_pb2.UpdateRepositoryModelRequest) -> Changes:
    """Only what the request sets. Tags replace the stored ones when any are given: the contract has no way to
    say "clear the tags" (its `replace_tags` is not a field), so an empty list leaves them."""
    bad: list[FieldViolation] = []
    problem = name_problem(request.name)
    if problem is not None:
        bad.append(FieldViolation("name", problem))
    changes = Changes(
        description=_description(request.description, "description", bad) if request.HasField("description") else None,
        is_favorite=request.is_favorite if request.HasField("is_favorite") else None,
        is_default=request.is_default if request.HasField("is_default") else None,
        tags=_tags(request.tags, "tags", bad) if request.tags else None,
    )
    if bad:
        raise InvalidArgument(bad)
    return changes


def repository_message(row: RepositoryRow, stats: ModelStats | None = None) -> models_pb2.RepositoryModel:
    m = models_pb2.RepositoryModel(
        name=row.name,
        description=row.description,
        is_favorite=row.is_favorite,
        is_default=row.is_default,
        tags=row.tags,
        provider=row.provider if row.available else "",
        available=row.available,
    )
    m.created_at.CopyFrom(timestamp(row.created_at))
    if stats is not None:
        m.stats.CopyFrom(
            models_pb2.RepositoryModelStats(
                total_requests=stats.total_requests, avg_latency_ms=round(stats.avg_latency_ms, 1)
            )
        )
    return m
