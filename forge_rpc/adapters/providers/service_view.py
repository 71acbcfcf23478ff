"""Services: what the seeds and routing rules call one configured endpoint of a provider — how each gets its
name, and what the catalog says it serves."""

from __future__ import annotations

import fnmatch
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass

from ...domain import ModelCatalog
from .factory import ProviderSpec

__all__ = ["ServiceView", "assign_names", "default_model_of", "model_name_on", "models_of"]


@dataclass(frozen=True, slots=True)
class ServiceView:
    """One service as the registry views show it; never carries the key itself."""

    name: str
    provider_id: str
    kind: str
    """Provider kind: "openai", "ollama", "gemini", "local"…"""
    adapter: str
    """Wire format: "openai", "ollama", "litellm" or "local"."""
    base_url: str
    configured: bool
    """Named by the configuration (not Ollama found by discovery, not the in-process model)."""
    env_var: str
    key_configured: bool
    key_source: str
    """"stored" (set through the API), "env", "config", or empty when there is no key."""
    accepts_key: bool


def assign_names(specs: Mapping[str, ProviderSpec], reserved: frozenset[str] = frozenset()) -> dict[str, str]:
    """Provider id → service name: the configured name (`model_info.service`) when given, else the provider
    kind when it is the only unnamed one of its kind ("openai", "ollama"), else the provider id ("openai-2").

    A name the configuration gives stays stable across restarts and reloads, which is what stored keys and
    routing rules refer to; derived names can shift when deployments are added."""
    names: dict[str, str] = {}
    taken = set(reserved)
    for pid, spec in specs.items():
        if spec.service:
            name = spec.service if spec.service not in taken else f"{spec.service}-{pid}"
            names[pid] = name
            taken.add(name)
    unnamed = Counter(spec.kind for spec in specs.values() if not spec.service)
    for pid, spec in specs.items():
        if spec.service:
            continue
        name = spec.kind if unnamed[spec.kind] == 1 and spec.kind not in taken else pid
        names[pid] = name
        taken.add(name)
    return names


def models_of(catalog: ModelCatalog, provider_id: str) -> list[str]:
    """Model names the provider serves: exact names first, then wildcard patterns ("openai/*")."""
    return [d.model_name for d in catalog.deployments() if d.provider_id == provider_id]


def default_model_of(catalog: ModelCatalog, provider_id: str) -> str:
    """The service's default model: forge's default when this service serves it, else its first model."""
    default = catalog.default_model
    route = catalog.find(default) if default else None
    if route is not None and route.deployment.provider_id == provider_id:
        return default or ""
    return next((m for m in models_of(catalog, provider_id) if "*" not in m), "")


def model_name_on(catalog: ModelCatalog, provider_id: str, model: str) -> str | None:
    """The catalog name that sends `model` to this provider: its own name, a deployment whose upstream id it
    is, or a wildcard deployment's prefix + it. None when this provider cannot serve it."""
    candidates = [model]
    for d in catalog.deployments():
        if d.provider_id != provider_id:
            continue
        prefix = d.model_name.split("*", 1)[0]
        if not d.is_wildcard and d.upstream_model == model:
            candidates.append(d.model_name)
        elif d.is_wildcard and fnmatch.fnmatchcase(prefix + model, d.model_name):
            candidates.append(prefix + model)
    for name in candidates:
        route = catalog.find(name)
        if route is not None and route.deployment.provider_id == provider_id:
            return name
    return None
