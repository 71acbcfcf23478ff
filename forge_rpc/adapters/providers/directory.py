"""ProviderDirectory: the provider instances, the models they serve (configured and discovered), and the
catalog routing reads. Ollama is discovered when it answers; its model list is cached for a TTL."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ...domain import ChatProvider, Deployment, ModelCatalog, ModelNotFound, ModelRecord
from .factory import ProviderSpec, build_provider
from .local_llama import LocalLlamaProvider
from .ollama_native import OllamaProvider
from .openai_compat import OpenAICompatProvider

__all__ = ["ConfiguredModel", "ProviderDirectory"]

log = logging.getLogger("forge.providers")

# A request for an unknown model refreshes discovery at most this often, so a typo cannot hammer Ollama.
_MIN_REFRESH_S = 1.0


@dataclass(frozen=True, slots=True)
class ConfiguredModel:
    model_name: str
    upstream_model: str
    spec: ProviderSpec
    info: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)


class ProviderDirectory:
    def __init__(
        self,
        configured: Sequence[ConfiguredModel],
        *,
        ollama_host: str,
        discover_ollama: bool,
        default_model: str | None,
        ttl_s: float = 30.0,
        local: LocalLlamaProvider | None = None,
    ) -> None:
        self._ids: dict[ProviderSpec, str] = {}
        self.providers: dict[str, ChatProvider] = {}
        self._configured: list[Deployment] = []
        for m in configured:
            pid = self._provider_id(m.spec, ollama_host)
            self._configured.append(Deployment(m.model_name, pid, m.upstream_model, m.info))
        self._ollama_spec = ProviderSpec("ollama", "ollama", ollama_host, None, "OLLAMA_HOST")
        self._ollama_id = self._provider_id(self._ollama_spec, ollama_host) if discover_ollama else None
        self._default = default_model
        self._ttl = ttl_s
        self._discovered: list[Deployment] = []
        self._discovered_records: list[ModelRecord] = []
        # The in-process model comes after everything configured or discovered: it is the default model only
        # when nothing else is there.
        self.local = local
        self._fallback: list[Deployment] = []
        if local is not None:
            self.providers["local"] = local
            self._fallback.append(Deployment(local.record.name, "local", local.record.upstream_model))
        self._preferred_default: str | None = None
        self._catalog = ModelCatalog([*self._configured, *self._fallback], default_model)
        self._fetched_at = 0.0
        self._lock = asyncio.Lock()

    def _provider_id(self, spec: ProviderSpec, ollama_host: str) -> str:
        if spec not in self._ids:
            pid = f"{spec.kind}-{len(self._ids) + 1}"
            self._ids[spec] = pid
            self.providers[pid] = build_provider(spec, ollama_host)
        return self._ids[spec]

    @property
    def ollama(self) -> OllamaProvider | None:
        if self._ollama_id is None:
            return None
        provider = self.providers[self._ollama_id]
        return provider if isinstance(provider, OllamaProvider) else None

    def set_preferred_default(self, model_name: str | None) -> None:
        """The model repository's `is_default` (a user's choice) wins over the configured default; None reverts
        to the configured one."""
        self._preferred_default = model_name
        self._rebuild()

    def _rebuild(self) -> None:
        default = self._preferred_default or self._default
        self._catalog = ModelCatalog([*self._configured, *self._discovered, *self._fallback], default)

    # CatalogSource
    def current(self) -> ModelCatalog:
        return self._catalog

    async def refresh(self, force: bool = False) -> ModelCatalog:
        async with self._lock:
            age = time.monotonic() - self._fetched_at
            if force or age > (_MIN_REFRESH_S if self._fetched_at else 0):
                await self._discover()
        return self._catalog

    async def ensure_fresh(self) -> ModelCatalog:
        if time.monotonic() - self._fetched_at > self._ttl:
            return await self.refresh(force=True)
        return self._catalog

    async def _discover(self) -> None:
        self._fetched_at = time.monotonic()
        ollama = self.ollama
        if ollama is None or self._ollama_id is None:
            return
        try:
            records = list(await ollama.list_models())
        except Exception as exc:  # discovery is best effort: Ollama simply is not there
            if self._discovered:
                log.warning("Ollama at %s stopped answering: %s", ollama.host, exc)
            records = []
        self._discovered_records = records
        deployments = [Deployment(r.name, self._ollama_id, r.name) for r in records]
        if records:
            deployments.append(Deployment("ollama/*", self._ollama_id, "*"))
        self._discovered = deployments
        self._rebuild()

    async def list_models(self) -> list[ModelRecord]:
        """Every servable model: configured ones first, then what Ollama has."""
        await self.ensure_fresh()
        out: list[ModelRecord] = []
        seen: set[str] = set()
        for d in self._configured:
            if d.is_wildcard:
                out.extend(await self._expand_wildcard(d, seen))
                continue
            if d.model_name in seen:
                continue
            seen.add(d.model_name)
            provider = self.providers[d.provider_id]
            out.append(
                ModelRecord(
                    name=d.model_name,
                    provider=provider.kind,
                    owned_by=str(d.info.get("owned_by") or provider.kind),
                    capabilities=list(d.info.get("capabilities") or ["chat"]),
                    context_length=int(d.info.get("max_input_tokens") or d.info.get("context_length") or 0),
                    upstream_model=d.upstream_model,
                )
            )
        for r in self._discovered_records:
            if r.name not in seen:
                seen.add(r.name)
                out.append(r)
        if self.local is not None and self.local.record.name not in seen:
            out.append(self.local.record)
        return out

    async def _expand_wildcard(self, d: Deployment, seen: set[str]) -> list[ModelRecord]:
        provider = self.providers[d.provider_id]
        if not isinstance(provider, OpenAICompatProvider):
            return []
        prefix = d.model_name.split("*", 1)[0]
        out = []
        for upstream in await provider.list_upstream_models():
            name = prefix + upstream
            if name not in seen:
                seen.add(name)
                out.append(
                    ModelRecord(name=name, provider=provider.kind, owned_by=provider.kind, upstream_model=upstream)
                )
        return out

    async def find_record(self, name: str) -> ModelRecord:
        for record in await self.list_models():
            if record.name == name:
                return record
        route = (await self.refresh()).find(name)
        if route is None:
            raise ModelNotFound(name, [r.name for r in await self.list_models()])
        provider = self.providers[route.deployment.provider_id]
        if isinstance(provider, OllamaProvider):
            return await provider.show(route.upstream_model)
        return ModelRecord(
            name=name, provider=provider.kind, owned_by=provider.kind, upstream_model=route.upstream_model
        )

    def configured_provider_ids(self) -> set[str]:
        """Providers the configuration names (as opposed to Ollama found by discovery)."""
        return {d.provider_id for d in self._configured}

    def provider_kinds(self) -> Mapping[str, str]:
        return {pid: p.kind for pid, p in self.providers.items()}

    async def close(self) -> None:
        for provider in self.providers.values():
            closer = getattr(provider, "close", None)
            if closer is not None:
                await closer()
