"""Which embedders RAG and `/v1/embeddings` can use: the offline local model (the default), and
"<route>/<model>" for every wildcard route of the providers config — the same routes chat uses, so
`openai/text-embedding-3-small` works wherever `openai/*` chat does, `ollama/nomic-embed-text` wherever Ollama is
discovered, and providers without a lean adapter (Gemini, Cohere…) go through litellm."""

from __future__ import annotations

from collections.abc import Callable

from ..adapters.embedders import Embedder, EmbedderDirectory, MiniLMEmbedder, OpenAIEmbedder
from ..adapters.embedders.provider_backed import ProviderEmbedder
from ..adapters.providers.factory import KNOWN_OPENAI_COMPATIBLE, classify
from ..adapters.providers.litellm_provider import LitellmProvider
from ..adapters.providers.ollama_native import OllamaProvider
from .config import DeploymentConfig, ForgeConfig

__all__ = ["build_embedders"]


def _factory(route: str, d: DeploymentConfig, ollama_host: str) -> Callable[[str], Embedder]:
    def build(model: str) -> Embedder:
        kind, adapter, upstream = classify(d.model.replace("*", model), d.adapter)
        name = f"{route}/{model}"
        if adapter == "openai":
            base = d.api_base or KNOWN_OPENAI_COMPATIBLE.get(kind, KNOWN_OPENAI_COMPATIBLE["openai"])[0]
            env_var = d.env_var or f"{kind.upper()}_API_KEY"
            return OpenAIEmbedder(route, upstream, base, d.api_key, env_var=env_var)
        if adapter == "ollama":
            return ProviderEmbedder(name, upstream, OllamaProvider(d.api_base or ollama_host))
        env_var = d.env_var or f"{kind.upper()}_API_KEY"
        # Built on first use of such an embedder, so litellm's import (seconds) is paid only by those who use it.
        return ProviderEmbedder(name, upstream, LitellmProvider(kind, d.api_base, d.api_key, env_var))

    return build


def build_embedders(config: ForgeConfig, local: MiniLMEmbedder) -> EmbedderDirectory:
    p = config.providers
    factories: dict[str, Callable[[str], Embedder]] = {}
    for d in p.deployments:
        if d.model_name.endswith("/*"):
            factories.setdefault(d.model_name[:-2], _factory(d.model_name[:-2], d, p.ollama_host))
    if p.discover_ollama and "ollama" not in factories:
        ollama = DeploymentConfig("ollama/*", "ollama/*", api_base=p.ollama_host)
        factories["ollama"] = _factory("ollama", ollama, p.ollama_host)
    return EmbedderDirectory([local], factories)
