"""Which adapter serves an upstream model id, and building one provider instance per (adapter, base, key)."""

from __future__ import annotations

from dataclasses import dataclass

from ...domain import ChatProvider
from .litellm_provider import LitellmProvider
from .ollama_native import OllamaProvider
from .openai_compat import OpenAICompatProvider

__all__ = ["KNOWN_OPENAI_COMPATIBLE", "ProviderSpec", "build_provider", "classify"]

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


def build_provider(spec: ProviderSpec, ollama_host: str) -> ChatProvider:
    if spec.adapter == "ollama":
        return OllamaProvider(spec.api_base or ollama_host)
    if spec.adapter == "openai":
        base = spec.api_base or KNOWN_OPENAI_COMPATIBLE.get(spec.kind, KNOWN_OPENAI_COMPATIBLE["openai"])[0]
        return OpenAICompatProvider(spec.kind, base, spec.api_key, spec.env_var)
    return LitellmProvider(spec.kind, spec.api_base, spec.api_key, spec.env_var)
