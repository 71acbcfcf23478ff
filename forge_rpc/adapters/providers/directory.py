"""ProviderDirectory: the provider instances, the models they serve (configured and discovered), the services
they are known as, and the catalog routing reads. Ollama is discovered when it answers; its model list is
cached for a TTL.

The configuration (`reconfigure`) and a service's API key (`set_api_key`) change at runtime. Both swap
objects synchronously, so no request sees half a change, and neither closes a provider object that is being
replaced: a stream already running keeps the object it started on and finishes there. Replaced objects are
closed with the directory.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from ...domain import ChatProvider, Deployment, ModelCatalog, ModelNotFound, ModelRecord
from .factory import ProviderSpec, base_url, build_provider
from .local_llama import LocalLlamaProvider
from .ollama_native import OllamaProvider
from .openai_compat import OpenAICompatProvider
from .service_view import ServiceView, assign_names

__all__ = ["ConfiguredModel", "ProviderDirectory", "ServiceView"]

log = logging.getLogger("forge.providers")

# A request for an unknown model refreshes discovery at most this often, so a typo cannot hammer Ollama.
_MIN_REFRESH_S = 1.0
_LOCAL = "local"


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
        # The engine holds this very dict: it is changed in place, never replaced.
        self.providers: dict[str, ChatProvider] = {}
        self._specs: dict[str, ProviderSpec] = {}
        """Provider id → its spec as configured (a stored key is applied on top)."""
        self._live_keys: dict[str, str | None] = {}
        self._names: dict[str, str] = {}
        self._by_name: dict[str, str] = {}
        self._stored_keys: dict[str, str] = {}
        """Service name → key set through the API; wins over the configured one."""
        self._retired: list[ChatProvider] = []
        self._serial = 0
        self._configured: list[Deployment] = []
        self._discovered: list[Deployment] = []
        self._discovered_records: list[ModelRecord] = []
        # The in-process model comes after everything configured or discovered: it is the default model only
        # when nothing else is there.
        self.local = local
        self._fallback: list[Deployment] = []
        if local is not None:
            self.providers[_LOCAL] = local
            self._fallback.append(Deployment(local.record.name, _LOCAL, local.record.upstream_model))
        self._preferred_default: str | None = None
        self._ollama_host = ollama_host
        self._ollama_id: str | None = None
        self._default = default_model
        self._ttl = ttl_s
        self._catalog = ModelCatalog([])
        self._fetched_at = 0.0
        self._lock = asyncio.Lock()
        self.reconfigure(
            configured,
            ollama_host=ollama_host,
            discover_ollama=discover_ollama,
            default_model=default_model,
            ttl_s=ttl_s,
        )

    # -- runtime changes -------------------------------------------------------------------------------------
    def reconfigure(
        self,
        configured: Sequence[ConfiguredModel],
        *,
        ollama_host: str,
        discover_ollama: bool,
        default_model: str | None,
        ttl_s: float,
    ) -> None:
        """Replaces the configured deployments and the discovery settings in one step. Providers whose spec
        is unchanged are kept (with their pooled connections); new ones are built; the rest are retired."""
        specs: dict[str, ProviderSpec] = {}
        ids: dict[ProviderSpec, str] = {}
        current = {spec: pid for pid, spec in self._specs.items()}
        # A spec whose only change is its key keeps its id (and with it a derived name like "openai-2").
        keyless = {replace(spec, api_key=None): pid for pid, spec in self._specs.items()}

        def pid_for(spec: ProviderSpec) -> str:
            if spec not in ids:
                pid = current.get(spec) or keyless.get(replace(spec, api_key=None))
                if pid is None or pid in specs:
                    self._serial += 1
                    pid = f"{spec.kind}-{self._serial}"
                ids[spec] = pid
                specs[pid] = spec
            return ids[spec]

        deployments = []
        for m in configured:
            spec = m.spec
            if not spec.service and m.info.get("service"):
                spec = replace(spec, service=str(m.info["service"]))
            deployments.append(Deployment(m.model_name, pid_for(spec), m.upstream_model, m.info))
        ollama_id = (
            pid_for(ProviderSpec("ollama", "ollama", ollama_host, None, "OLLAMA_HOST")) if discover_ollama else None
        )
        names = assign_names(specs, frozenset({_LOCAL}) if self.local is not None else frozenset())
        # Build first (constructors only; nothing connects), then swap everything without awaiting in between.
        built: dict[str, tuple[ChatProvider, str | None]] = {}
        for pid, spec in specs.items():
            key = self._stored_keys.get(names[pid], spec.api_key) if spec.accepts_key else None
            moved = spec.adapter == "ollama" and spec.api_base is None and ollama_host != self._ollama_host
            if pid not in self.providers or self._live_keys.get(pid) != key or moved:
                built[pid] = (build_provider(replace(spec, api_key=key), ollama_host), key)
        for pid, (provider, key) in built.items():
            old = self.providers.get(pid)
            if old is not None:
                self._retired.append(old)
            self.providers[pid] = provider
            self._live_keys[pid] = key
        for pid in [p for p in self.providers if p != _LOCAL and p not in specs]:
            self._retired.append(self.providers.pop(pid))
            self._live_keys.pop(pid, None)
        self._specs = specs
        self._names = names
        self._by_name = {name: pid for pid, name in names.items()}
        if self.local is not None:
            self._names[_LOCAL] = self._by_name[_LOCAL] = _LOCAL
        if ollama_id != self._ollama_id:
            self._discovered, self._discovered_records, self._fetched_at = [], [], 0.0
        self._ollama_id = ollama_id
        self._ollama_host = ollama_host
        self._configured = deployments
        self._default = default_model
        self._ttl = ttl_s
        self._rebuild()

    def set_api_key(self, service: str, key: str | None) -> None:
        """Uses `key` for `service` from the next request on; None goes back to the configured key. Raises
        KeyError for an unknown service, ValueError for one that takes no key."""
        pid = self._by_name[service]
        spec = self._specs.get(pid)
        if spec is None or not spec.accepts_key:
            raise ValueError(f"service {service!r} takes no API key")
        if key is None:
            self._stored_keys.pop(service, None)
        else:
            self._stored_keys[service] = key
        effective = self._stored_keys.get(service, spec.api_key)
        if effective != self._live_keys.get(pid):
            self._retired.append(self.providers[pid])
            self.providers[pid] = build_provider(replace(spec, api_key=effective), self._ollama_host)
            self._live_keys[pid] = effective

    def remember_key(self, service: str, key: str) -> None:
        """A stored key for a service that is not configured now: used if a reload brings it back."""
        self._stored_keys[service] = key

    def api_key(self, service: str) -> str | None:
        """The key requests to `service` use now (for testing it and for its masked preview)."""
        pid = self._by_name.get(service)
        return self._live_keys.get(pid) if pid is not None else None

    # -- the services view -----------------------------------------------------------------------------------
    def service_name(self, provider_id: str) -> str:
        return self._names.get(provider_id, provider_id)

    def provider_id(self, service: str) -> str | None:
        return self._by_name.get(service)

    def spec(self, service: str) -> ProviderSpec | None:
        """How the service is reached, as configured (its key is the configured one, not a stored one)."""
        pid = self._by_name.get(service)
        return self._specs.get(pid) if pid is not None else None

    def services(self) -> list[ServiceView]:
        return [view for name in self._by_name if (view := self.service(name)) is not None]

    def service(self, name: str) -> ServiceView | None:
        pid = self._by_name.get(name)
        if pid is None:
            return None
        if pid == _LOCAL:
            return ServiceView(name, pid, _LOCAL, _LOCAL, "", False, "", False, "", False)
        spec = self._specs[pid]
        key = self._live_keys.get(pid)
        source = "stored" if name in self._stored_keys else (spec.key_source or "config") if key else ""
        return ServiceView(
            name=name,
            provider_id=pid,
            kind=spec.kind,
            adapter=spec.adapter,
            base_url=base_url(spec, self._ollama_host),
            configured=pid in self.configured_provider_ids(),
            env_var=spec.env_var,
            key_configured=bool(key),
            key_source=source,
            accepts_key=spec.accepts_key,
        )

    # -- the catalog -----------------------------------------------------------------------------------------
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
        ollama, ollama_id = self.ollama, self._ollama_id
        if ollama is None or ollama_id is None:
            return
        try:
            records = list(await ollama.list_models())
        except Exception as exc:  # discovery is best effort: Ollama simply is not there
            if self._discovered:
                log.warning("Ollama at %s stopped answering: %s", ollama.host, exc)
            records = []
        if ollama_id != self._ollama_id:
            return  # reconfigured while listing: this answer is about a provider no longer in use
        self._discovered_records = records
        deployments = [Deployment(r.name, ollama_id, r.name) for r in records]
        if records:
            deployments.append(Deployment("ollama/*", ollama_id, "*"))
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
        provider = self.providers.get(d.provider_id)
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
        for provider in [*self.providers.values(), *self._retired]:
            closer = getattr(provider, "close", None)
            if closer is not None:
                await closer()
        self._retired.clear()
