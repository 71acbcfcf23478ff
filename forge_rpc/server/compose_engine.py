"""The providers and the chat engine: configured deployments, discovery, the in-process model, and the
failover around them (load balancing, retries, fallbacks, circuit breakers) from `router_settings`."""

from __future__ import annotations

from ..adapters.accounting import LocalTokenCounter, PriceTable
from ..adapters.providers.directory import ConfiguredModel, ProviderDirectory
from ..adapters.providers.factory import ProviderSpec, classify
from ..adapters.providers.local_llama import LocalLlamaProvider, local_provider_if_available
from ..domain import ChatEngine
from ..domain.balancing import balancer_named
from ..domain.breaker import BreakerPolicy, CircuitBreakers
from ..domain.failover import Failover
from ..domain.retry import Fallbacks, RetryPolicy
from .config import DeploymentConfig, ForgeConfig, RouterConfig

__all__ = ["build_engine", "build_failover", "configured_models", "reconfigure_failover"]


def configured_models(deployments: tuple[DeploymentConfig, ...]) -> list[ConfiguredModel]:
    out = []
    for d in deployments:
        kind, adapter, upstream = classify(d.model, d.adapter)
        spec = ProviderSpec(kind, adapter, d.api_base, d.api_key, d.env_var or f"{kind.upper()}_API_KEY")
        # rpm/tpm weigh the deployment in its group's shuffle; model_info's own values win.
        limits = {k: v for k, v in (("rpm", d.rpm), ("tpm", d.tpm), ("weight", d.weight)) if v}
        out.append(ConfiguredModel(d.model_name, upstream, spec, {**limits, **d.info}))
    return out


def build_failover(router: RouterConfig) -> Failover:
    failover = Failover(breakers=CircuitBreakers(BreakerPolicy()))
    reconfigure_failover(failover, router)
    return failover


def reconfigure_failover(failover: Failover, router: RouterConfig) -> None:
    """Applies `router_settings` (at start, and on a config reload): breaker states, loads and latencies are
    kept; calls already running finish on the settings they started with, the next ones use these."""
    failover.breakers.policy = BreakerPolicy(router.allowed_fails, router.cooldown_time)
    failover.retry = RetryPolicy(
        num_retries=router.num_retries,
        min_wait_s=router.retry_after,
        max_wait_s=router.max_retry_wait,
        timeout_s=router.timeout,
    )
    failover.fallbacks = Fallbacks(router.fallbacks, router.context_window_fallbacks, router.default_fallbacks)
    failover.balancer = balancer_named(router.routing_strategy)


def build_engine(
    config: ForgeConfig, prices: PriceTable, local: LocalLlamaProvider | None
) -> tuple[ProviderDirectory, ChatEngine]:
    """`local` serves an in-process model built by the caller (tests); by default the `local` extra's, if
    installed and not turned off. The engine's breakers (`engine.breakers`) start in memory; the resilience
    component moves them to Redis when it is configured."""
    if local is None and config.providers.local_model:
        local = local_provider_if_available()
    directory = ProviderDirectory(
        configured_models(config.providers.deployments),
        ollama_host=config.providers.ollama_host,
        discover_ollama=config.providers.discover_ollama,
        default_model=config.providers.default_model,
        ttl_s=config.providers.discovery_ttl_s,
        local=local,
    )
    failover = build_failover(config.router)
    engine = ChatEngine(directory, directory.providers, LocalTokenCounter(), prices, failover=failover)
    return directory, engine
