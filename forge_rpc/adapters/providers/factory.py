"""Which adapter serves an upstream model id, and building one provider instance per (adapter, base, key)."""

from __future__ import annotations

from dataclasses import dataclass, field

from ...domain import ChatProvider
from .litellm_provider import LitellmProvider
from .ollama_native import OllamaProvider
from .openai_compat import OpenAICompatProvider

__all__ = ["KNOWN_OPENAI_COMPATIBLE", "ProviderSpec", "base_url", "build_provider", "classify"]

# LiteLLM provider prefixes whose APIs speak OpenAI's wire format: served by the lean adapter.
KNOWN_OPENAI_COMPATIBLE: dict[str, tuple[str, str]] = {
    "openai": ("https://api.openai.com/v1", "OPENAI_API_KEY"),
    "deepseek": ("https://api.deepseek.com/v1", "DEEPSEEK_API_KEY"),
    "openrouter": ("https://openrouter.ai/api/v1", "OPENROUTER_API_KEY"),
    "groq": ("https://api.groq.com/openai/v1", "GROQ_API_KEY"),
    "mistral": ("https://api.mistral.ai/v1", "MISTRAL_API_KEY"),
    "xai": ("https://api.x.ai/v1", "XAI_API_KEY"),
    "together_ai": ("https://api.together.xyz/v1", "TOGETHERAI_API_KEY"),
    "fireworks_ai": ("https://api.fireworks.ai/inference/v1", "FIREWORKS_API_KEY"),
    "hosted_vllm": ("http://localhost:8000/v1", "HOSTED_VLLM_API_KEY"),
    "lm_studio": ("http://localhost:1234/v1", "LM_STUDIO_API_KEY"),
}
OLLAMA_PREFIXES = ("ollama", "ollama_chat")


@dataclass(frozen=True, slots=True)
class ProviderSpec:
    """How to reach one provider instance. `adapter` is "openai", "ollama" or "litellm"."""

    kind: str
    adapter: str
    api_base: str | None
    api_key: str | None
    env_var: str
    service: str = ""
    """The service name the configuration gives it (`model_info.service`); empty lets the directory name it."""
    key_source: str = field(default="", compare=False)
    """Where `api_key` came from: "env" or "config" (empty when unknown)."""

    @property
    def accepts_key(self) -> bool:
        """Whether an API key means anything to this provider (Ollama and the in-process model take none)."""
        return self.adapter in ("openai", "litellm")


def classify(upstream_model: str, adapter: str | None = None) -> tuple[str, str, str]:
    """(provider kind, adapter, upstream id as that adapter wants it) for a LiteLLM-style model id."""
    prefix, _, rest = upstream_model.partition("/")
    if not rest:
        prefix, rest = "openai", upstream_model
    if adapter == "litellm" or (
        adapter is None and prefix not in KNOWN_OPENAI_COMPATIBLE and prefix not in OLLAMA_PREFIXES
    ):
        return prefix, "litellm", upstream_model
    if prefix in OLLAMA_PREFIXES or adapter == "ollama":
        return "ollama", "ollama", rest
    return prefix, "openai", rest


def base_url(spec: ProviderSpec, ollama_host: str) -> str:
    """The endpoint the provider calls; empty for SDK-reached providers without an explicit base."""
    if spec.adapter == "ollama":
        return spec.api_base or ollama_host
    if spec.adapter == "openai":
        return spec.api_base or KNOWN_OPENAI_COMPATIBLE.get(spec.kind, KNOWN_OPENAI_COMPATIBLE["openai"])[0]
    return spec.api_base or ""


def build_provider(spec: ProviderSpec, ollama_host: str) -> ChatProvider:
    if spec.adapter == "ollama":
        return OllamaProvider(base_url(spec, ollama_host))
    if spec.adapter == "openai":
        return OpenAICompatProvider(spec.kind, base_url(spec, ollama_host), spec.api_key, spec.env_var)
    return LitellmProvider(spec.kind, spec.api_base, spec.api_key, spec.env_var)
