"""The providers and the chat engine: configured deployments, discovery, the in-process model."""

from __future__ import annotations

from ..adapters.accounting import LocalTokenCounter, PriceTable
from ..adapters.providers.directory import ConfiguredModel, ProviderDirectory
from ..adapters.providers.factory import ProviderSpec, classify
from ..adapters.providers.local_llama import LocalLlamaProvider, local_provider_if_available
from ..domain import ChatEngine
from .config import DeploymentConfig, ForgeConfig

__all__ = ["build_engine", "configured_models"]


def configured_models(deployments: tuple[DeploymentConfig, ...]) -> list[ConfiguredModel]:
    out = []
    for d in deployments:
        kind, adapter, upstream = classify(d.model, d.adapter)
        spec = ProviderSpec(kind, adapter, d.api_base, d.api_key, d.env_var or f"{kind.upper()}_API_KEY")
        out.append(ConfiguredModel(d.model_name, upstream, spec, d.info))
    return out


def build_engine(
    config: ForgeConfig, prices: PriceTable, local: LocalLlamaProvider | None
) -> tuple[ProviderDirectory, ChatEngine]:
    """`local` serves an in-process model built by the caller (tests); by default the `local` extra's, if
    installed and not turned off."""
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
    engine = ChatEngine(directory, directory.providers, LocalTokenCounter(), prices)
    return directory, engine
