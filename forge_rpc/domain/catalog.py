"""Which deployment serves a model name: exact names first, then LiteLLM-style wildcards (`openai/*`)."""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from .errors import ModelNotFound

__all__ = ["Deployment", "ModelCatalog", "Route"]


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


class ModelCatalog:
    """An immutable view of the configured and discovered deployments; replaced whole on refresh."""

    def __init__(self, deployments: Iterable[Deployment], default_model: str | None = None) -> None:
        self._exact: dict[str, Deployment] = {}
        self._wildcards: list[Deployment] = []
        for d in deployments:
            if d.is_wildcard:
                self._wildcards.append(d)
            else:
                self._exact.setdefault(d.model_name, d)
        self._default = default_model

    @property
    def default_model(self) -> str | None:
        if self._default:
            return self._default
        return next(iter(self._exact), None)

    def names(self) -> list[str]:
        return [*self._exact, *(d.model_name for d in self._wildcards)]

    def deployments(self) -> list[Deployment]:
        return [*self._exact.values(), *self._wildcards]

    def find(self, model: str) -> Route | None:
        exact = self._exact.get(model)
        if exact is not None:
            return Route(exact, exact.upstream_model)
        for d in self._wildcards:
            if fnmatch.fnmatchcase(model, d.model_name):
                return Route(d, _fill_wildcard(d, model))
        return None

    def resolve(self, model: str) -> Route:
        route = self.find(model or (self.default_model or ""))
        if route is None:
            raise ModelNotFound(model, self.names())
        return route


def _fill_wildcard(d: Deployment, model: str) -> str:
    # `openai/*` → upstream `openai/*`: the request's own name is the upstream id, minus the routing prefix
    # when the upstream template says so (LiteLLM proxy semantics).
    prefix = d.model_name.split("*", 1)[0]
    rest = model[len(prefix) :]
    return d.upstream_model.replace("*", rest) if "*" in d.upstream_model else model
