"""RoutingService (issue #5), beyond GetHealth/WatchServiceStatus: the provider and service registry with live
health, routing rules, routed task execution, provider keys, and configuration get/reload.

Circuit breakers live in the engine (the resilience component); hand their board in as `breakers` so the
health views, ResolveRoute, ExecuteTask and rule-routed chat see them. Its policy (chat_rules_policy.py) must run
first in the pipeline: it picks the model the later policies check. ListCircuitBreakers and ResetCircuitBreaker
are not here.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from ..adapters.host_stats import HostProbe
from ..adapters.secrets import ServerKey
from ..adapters.store.routing_store import RoutingStore
from ..domain import ForgeError
from ..services.breaker_hook import BreakerBoard
from ..services.config_admin import ConfigServicer
from ..services.detailed_health import DetailedHealthServicer
from ..services.key_vault import KeyVault
from ..services.provider_keys import ProviderKeysServicer
from ..services.provider_views import ProviderViewsServicer
from ..services.route_planner import RoutePlanner
from ..services.routing import TaskRoutingServicer
from ..services.routing_rules import RoutingRulesServicer
from ..services.rule_book import RuleBook
from .chat_rules_policy import ChatRulesPolicy
from .component import Component, Core, Resources
from .config import RoutingConfig
from .config_control import ConfigControl, configured_with_sources

__all__ = ["routing_component"]

log = logging.getLogger("forge.routing")


async def _keep_fresh(book: RuleBook, vault: KeyVault) -> None:
    """Other replicas' rule and key changes reach this one within `refresh_every_s`; a failed read keeps what
    this replica has."""
    while True:
        await asyncio.sleep(book.refresh_every_s)
        try:
            await book.reload()
            await vault.sync()
        except (OSError, ForgeError) as exc:
            log.warning("routing rules and provider keys not refreshed: %s", exc)
        except Exception:
            log.exception("routing rules and provider keys not refreshed")


def routing_component(core: Core, breakers: BreakerBoard | None = None) -> Component:
    cfg = core.config
    p = cfg.providers
    # The directory was built from the same model_list; this marks where each key came from (env or file),
    # which key status reports. Same specs, so no provider object is replaced.
    core.directory.reconfigure(
        configured_with_sources(p.deployments),
        ollama_host=p.ollama_host,
        discover_ollama=p.discover_ollama,
        default_model=p.default_model,
        ttl_s=p.discovery_ttl_s,
    )
    # Passive health: every upstream attempt the engine makes is reported to the monitor the views read.
    core.engine.observer = core.monitor.record
    store = RoutingStore()
    book = RuleBook(store, cfg.routing.rule_cache_ttl_s)
    vault = KeyVault(store, ServerKey(cfg.routing.secret_key, cfg.data_dir), core.directory)
    detailed = DetailedHealthServicer(
        core.directory, core.monitor, store, HostProbe(cfg.data_dir), cfg.version, core.started_at, breakers
    )

    def on_routing(routing: RoutingConfig) -> None:
        book.refresh_every_s = routing.rule_cache_ttl_s

    planner = RoutePlanner(core.directory, book, breakers)
    servicers: list[object] = [
        ProviderViewsServicer(core.directory, core.monitor, breakers),
        detailed,
        RoutingRulesServicer(store, book, core.directory),
        TaskRoutingServicer(planner, core.engine, core.directory, core.ledger),
        ProviderKeysServicer(core.directory, vault),
        ConfigServicer(ConfigControl(core, on_routing)),
    ]
    tasks: list[asyncio.Task[None]] = []

    async def start(resources: Resources) -> None:
        store.bind(resources.pool)
        detailed.bind(resources.pool)
        await book.reload()
        await vault.sync()  # stored keys are in use before the first request
        tasks.append(asyncio.create_task(_keep_fresh(book, vault), name="routing-refresh"))

    async def stop() -> None:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        tasks.clear()

    return Component(
        "routing",
        {"forge.routing.v1.RoutingService": servicers},
        policies=(ChatRulesPolicy(planner),),
        start=start,
        stop=stop,
    )
