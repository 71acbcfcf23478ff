"""Which deployments serve a model name: exact names first, then LiteLLM-style wildcards (`openai/*`).

Entries sharing a `model_name` form a model group (LiteLLM's load-balancing unit); every deployment gets a
stable, URL-safe id (`model_info.id`, else the slugged name and its index in the group) that breakers, headers
and the RoutingService use, the same on every replica built from the same configuration.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from .errors import ModelNotFound

__all__ = ["Candidate", "Deployment", "ModelCatalog", "ModelGroup", "Route"]

_MATCHED_MAX = 4096


@dataclass(frozen=True, slots=True)
class Deployment:
    """One way to serve a model name: a provider instance and the model id that provider knows."""

    model_name: str
    provider_id: str
    upstream_model: str
    info: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)

    @property
    def is_wildcard(self) -> bool:
        return "*" in self.model_name


@dataclass(frozen=True, slots=True)
class Route:
    """A resolved request: the deployment, and the upstream model id with any wildcard filled in."""

    deployment: Deployment
    upstream_model: str


@dataclass(frozen=True, slots=True)
class Candidate:
    """One deployment of a group, ready to call: its id (for breakers and load) and its route."""

    id: str
    route: Route


@dataclass(frozen=True, slots=True)
class ModelGroup:
    """The deployments serving one requested name, in configuration order."""

    name: str
    candidates: tuple[Candidate, ...]


class ModelCatalog:
    """An immutable view of the configured and discovered deployments; replaced whole on refresh."""

    def __init__(self, deployments: Iterable[Deployment], default_model: str | None = None) -> None:
        exact: dict[str, list[Deployment]] = {}
        wildcards: dict[str, list[Deployment]] = {}
        for d in deployments:
            members = (wildcards if d.is_wildcard else exact).setdefault(d.model_name, [])
            if d not in members:  # the same model on the same provider twice is one deployment
                members.append(d)
        taken: set[str] = set()
        self._members: list[tuple[str, Deployment]] = []
        self._exact: dict[str, ModelGroup] = {}
        for name, members in exact.items():
            group = tuple(
                Candidate(self._new_id(d, i, taken), Route(d, d.upstream_model)) for i, d in enumerate(members)
            )
            self._exact[name] = ModelGroup(name, group)
            self._members.extend((c.id, c.route.deployment) for c in group)
        self._wildcards: list[tuple[str, tuple[tuple[str, Deployment], ...]]] = []
        for pattern, members in wildcards.items():
            ids = tuple((self._new_id(d, i, taken), d) for i, d in enumerate(members))
            self._wildcards.append((pattern, ids))
            self._members.extend(ids)
        self._by_id = dict(self._members)
        self._default = default_model
        # Names answered by a wildcard, so each is matched and built once (clients repeat the same few names).
        self._matched: dict[str, ModelGroup | None] = {}

    def _new_id(self, d: Deployment, index: int, taken: set[str]) -> str:
        given = d.info.get("id")
        base = _slug(str(given)) if given else f"{_slug(d.model_name.replace('*', 'any'))}-{index}"
        out, n = base, 1
        while out in taken:  # two names that slug alike (`a/b`, `a-b`) still get distinct ids
            n += 1
            out = f"{base}-{n}"
        taken.add(out)
        return out

    @property
    def default_model(self) -> str | None:
        if self._default:
            return self._default
        return next(iter(self._exact), None)

    def names(self) -> list[str]:
        return [*self._exact, *(pattern for pattern, _ in self._wildcards)]

    def deployments(self) -> list[Deployment]:
        return [d for _, d in self._members]

    def members(self) -> list[tuple[str, Deployment]]:
        """Every deployment with its id, exact groups first, in configuration order."""
        return list(self._members)

    def by_id(self, deployment_id: str) -> Deployment | None:
        return self._by_id.get(deployment_id)

    def group(self, model: str) -> ModelGroup | None:
        """The deployments that serve `model`: its exact group, else the first wildcard pattern matching it."""
        exact = self._exact.get(model)
        if exact is not None:
            return exact
        if model in self._matched:
            return self._matched[model]
        found = self._match_wildcard(model)
        if len(self._matched) >= _MATCHED_MAX:  # names are the caller's: keep the memo bounded
            self._matched.clear()
        self._matched[model] = found
        return found

    def _match_wildcard(self, model: str) -> ModelGroup | None:
        for pattern, members in self._wildcards:
            if fnmatch.fnmatchcase(model, pattern):
                return ModelGroup(pattern, tuple(Candidate(i, Route(d, _fill_wildcard(d, model))) for i, d in members))
        return None

    def find(self, model: str) -> Route | None:
        """The group's first deployment (callers that need one route, not a choice)."""
        group = self.group(model)
        return group.candidates[0].route if group is not None else None

    def resolve(self, model: str) -> Route:
        route = self.find(model or (self.default_model or ""))
        if route is None:
            raise ModelNotFound(model, self.names())
        return route

    def resolve_group(self, model: str) -> ModelGroup:
        group = self.group(model or (self.default_model or ""))
        if group is None:
            raise ModelNotFound(model, self.names())
        return group


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "model"


def _fill_wildcard(d: Deployment, model: str) -> str:
    # `openai/*` → upstream `openai/*`: the request's own name is the upstream id, minus the routing prefix
    # when the upstream template says so (LiteLLM proxy semantics).
    prefix = d.model_name.split("*", 1)[0]
    rest = model[len(prefix) :]
    return d.upstream_model.replace("*", rest) if "*" in d.upstream_model else model
