"""ConfigControl: the running configuration for GetConfig (rendered, secrets masked) and ReloadConfig.

A reload re-reads the file (and the environment), and applies what can change live — the `model_list` and
provider settings, `router_settings` (retries, fallbacks, breakers, balancing) and the routing section — by
swapping the directory's deployments and the engine's failover settings in one step. Streams in
flight keep the provider objects they started on. Sections that need a restart (ports, storage, auth…) are
reported as changed and named in the message. A file that does not load leaves everything as it was.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import math
import re
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from ..adapters.providers.directory import ConfiguredModel
from ..adapters.providers.litellm_provider import load_litellm
from ..adapters.providers.service_view import default_model_of, models_of
from ..domain import FailedPrecondition
from ..services.config_admin import ConfigSnapshot, ReloadOutcome
from ..services.provider_keys import mask_key
from .component import Core
from .compose_engine import configured_models, reconfigure_failover
from .config import ConfigError, DeploymentConfig, ForgeConfig, RoutingConfig, load_config

__all__ = ["ConfigControl", "configured_with_sources"]

LIVE = frozenset({"model_list", "providers", "routing", "router_settings"})
"""Sections a reload applies without a restart."""

_SECRET_NAME = re.compile(r"secret|password|passwd|api_key|private_key|(^|_)(key|token)$")
_MASK = "****"


def configured_with_sources(deployments: Sequence[DeploymentConfig]) -> list[ConfiguredModel]:
    """The directory's view of `model_list`, each key marked with where it came from (env or the file)."""
    out = []
    for m, d in zip(configured_models(tuple(deployments)), deployments, strict=True):
        source = ("env" if d.env_var else "config") if d.api_key else ""
        out.append(dataclasses.replace(m, spec=dataclasses.replace(m.spec, key_source=source)))
    return out


def _render(value: Any, name: str, secret: Callable[[str], str]) -> Any:
    """JSON-able values; strings held in secret-named fields go through `secret`, URL passwords are masked."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _render(getattr(value, f.name), f.name, secret) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return {str(k): _render(v, str(k), secret) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_render(v, name, secret) for v in value]
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, str):
        if value and _SECRET_NAME.search(name):
            return secret(value)
        return _mask_url(value) if "://" in value and "@" in value else value
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if value is None or isinstance(value, (bool, int, float)):
        return value
    return str(value)


def _mask_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{parts.username or ''}:{_MASK}@{host}"))


def _masked(value: Any, name: str = "") -> Any:
    return _render(value, name, lambda _: _MASK)


def revision(config: ForgeConfig) -> str:
    """Changes whenever any setting does, secrets included, without revealing them."""
    fingerprinted = _render(config, "", lambda s: hashlib.sha256(s.encode()).hexdigest()[:12])
    return hashlib.sha256(json.dumps(fingerprinted, sort_keys=True).encode()).hexdigest()[:16]


def _model_entry(d: DeploymentConfig) -> dict[str, Any]:
    params: dict[str, Any] = {"model": d.model}
    if d.api_base:
        params["api_base"] = _mask_url(d.api_base)
    if d.api_key:
        params["api_key"] = f"os.environ/{d.env_var}" if d.env_var else mask_key(d.api_key)
    params.update({k: v for k, v in (("rpm", d.rpm), ("tpm", d.tpm), ("forge_adapter", d.adapter)) if v})
    return {"model_name": d.model_name, "litellm_params": params, "model_info": _masked(d.info)}


def _changed(old: ForgeConfig, new: ForgeConfig) -> list[str]:
    out = []
    for f in dataclasses.fields(ForgeConfig):
        a, b = getattr(old, f.name), getattr(new, f.name)
        if f.name == "providers":
            if a.deployments != b.deployments:
                out.append("model_list")
            if dataclasses.replace(a, deployments=()) != dataclasses.replace(b, deployments=()):
                out.append("providers")
        elif f.name == "routing":
            if dataclasses.replace(a, config_path=None) != dataclasses.replace(b, config_path=None):
                out.append("routing")
        elif a != b:
            out.append("router_settings" if f.name == "router" else f.name)
    return out


class ConfigControl:
    def __init__(self, core: Core, on_routing: Callable[[RoutingConfig], None]) -> None:
        self._core = core
        self._on_routing = on_routing
        self._path = core.config.routing.config_path
        self._loaded_at = time.time()
        self._revision = revision(core.config)
        self._lock = asyncio.Lock()

    def snapshot(self) -> ConfigSnapshot:
        cfg = self._core.config
        directory = self._core.directory
        services: dict[str, Any] = {}
        for view in directory.services():
            key = directory.api_key(view.name)
            services[view.name] = {
                "provider": view.kind,
                "type": view.adapter,
                "base_url": _mask_url(view.base_url),
                "models": models_of(directory.current(), view.provider_id),
                "default_model": default_model_of(directory.current(), view.provider_id),
                "key_source": view.key_source,
                "key_preview": mask_key(key) if key else "",
                "env_var": view.env_var,
            }
        routing = _masked(dataclasses.replace(cfg.routing, secret_key=None))
        routing["secret_key"] = "FORGE_SECRET_KEY" if cfg.routing.secret_key else "generated (data_dir/secret.key)"
        routing["router_settings"] = _masked(cfg.router)
        providers = _masked(dataclasses.replace(cfg.providers, deployments=()))
        providers.pop("deployments", None)
        routing["providers"] = providers
        limits = _masked(cfg.limits)
        cache = limits.pop("cache", {}) if isinstance(limits, dict) else {}
        return ConfigSnapshot(
            sections={
                "services": services,
                "routing": routing,
                "security": _masked(cfg.auth),
                "limits": limits,
                "cache": cache,
            },
            model_list=[_model_entry(d) for d in cfg.providers.deployments],
            source=str(self._path) if self._path is not None else "",
            loaded_at=self._loaded_at,
            revision=self._revision,
        )

    async def reload(self, validate_only: bool) -> ReloadOutcome:
        if self._path is None:
            raise FailedPrecondition(
                "forge was configured without a file (--config or FORGE_CONFIG): there is nothing to re-read",
                "NO_CONFIG_FILE",
            )
        async with self._lock:
            try:
                # Off the loop: a file read, and YAML parsing of a large model_list, are blocking work.
                new = await asyncio.to_thread(load_config, self._path)
                models = configured_with_sources(new.providers.deployments)
            except (ConfigError, ValueError, TypeError) as exc:  # a value of the wrong type in the file
                return ReloadOutcome(
                    False, "configuration not applied; the running one stays", self._revision, self._loaded_at,
                    errors=[str(exc)],
                )  # fmt: skip
            old = self._core.config
            effective = dataclasses.replace(
                old,
                providers=dataclasses.replace(new.providers, local_model=old.providers.local_model),
                routing=dataclasses.replace(new.routing, config_path=self._path, secret_key=old.routing.secret_key),
                router=new.router,
            )
            changed = _changed(old, new)
            later = [s for s in changed if s not in LIVE]
            if validate_only:
                note = f"would change {', '.join(changed)}" if changed else "no change"
                return ReloadOutcome(True, f"valid; {note}", revision(effective), time.time(), changed)
            if any(m.spec.adapter == "litellm" for m in models):
                await asyncio.to_thread(load_litellm)  # ~4.6 s the first time: never on the event loop
            p = effective.providers
            # One synchronous swap: requests before it use the old deployments, requests after it the new ones.
            self._core.directory.reconfigure(
                models,
                ollama_host=p.ollama_host,
                discover_ollama=p.discover_ollama,
                default_model=p.default_model,
                ttl_s=p.discovery_ttl_s,
            )
            reconfigure_failover(self._core.engine.failover, effective.router)
            self._core.monitor.invalidate()
            self._on_routing(effective.routing)
            self._core.config = effective
            self._revision, self._loaded_at = revision(effective), time.time()
            await self._core.directory.refresh(force=True)
        applied = [s for s in changed if s in LIVE]
        message = f"applied {', '.join(applied)}" if applied else "no live setting changed"
        if later:
            message += f"; {', '.join(later)} changed and take effect at the next restart"
        return ReloadOutcome(True, message, self._revision, self._loaded_at, changed)
