"""The `router_settings:` section (LiteLLM proxy's name) of the config file and its environment twins.

LiteLLM's keys keep their meaning: `routing_strategy`, `num_retries`, `retry_after`, `timeout`, `fallbacks`,
`context_window_fallbacks`, `default_fallbacks`, `allowed_fails`, `cooldown_time`. Other LiteLLM keys (redis_*,
cache settings…) are accepted and ignored, so a LiteLLM user's file loads as it is.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ...domain.balancing import STRATEGIES
from .errors import ConfigError

__all__ = ["RouterConfig", "parse_router"]

FallbackMap = Mapping[str, tuple[str, ...]]


@dataclass(frozen=True, slots=True)
class RouterConfig:
    routing_strategy: str = "simple-shuffle"
    """How a model group picks a deployment: "simple-shuffle" (weighted by `weight`, `rpm` or `tpm`),
    "least-busy" (fewest calls in flight) or "latency-based-routing" (lowest average latency)
    (`FORGE_ROUTING_STRATEGY`)."""
    num_retries: int = 0
    """Further attempts in a model group after a failure, before falling back (`FORGE_NUM_RETRIES`). A retry
    goes to a deployment not tried yet when there is one, at once; else it waits (backoff, Retry-After)."""
    retry_after: float = 0.0
    """Least seconds before retrying a deployment already tried (`FORGE_RETRY_AFTER`)."""
    max_retry_wait: float = 10.0
    """forge's addition: the longest upstream Retry-After honoured; an upstream asking for more is not
    retried, the fallback chain (or the caller) takes over (`FORGE_MAX_RETRY_WAIT`)."""
    timeout: float | None = None
    """Seconds one attempt may take (`FORGE_ROUTER_TIMEOUT`); the caller's deadline bounds the whole call."""
    fallbacks: FallbackMap = field(default_factory=dict)
    """Model group → groups to try in order when it is unavailable, rate limited, or the prompt is too long."""
    context_window_fallbacks: FallbackMap = field(default_factory=dict)
    """Model group → groups with larger windows, used instead of `fallbacks` when the prompt is too long."""
    default_fallbacks: tuple[str, ...] = ()
    """Fallbacks of every group `fallbacks` does not name."""
    allowed_fails: int = 3
    """Consecutive failures that open a deployment's circuit breaker (`FORGE_ALLOWED_FAILS`)."""
    cooldown_time: float = 5.0
    """Seconds an open breaker keeps its deployment out before one probe call (`FORGE_COOLDOWN_TIME`)."""


def parse_router(section: Mapping[str, Any], env: Mapping[str, str]) -> RouterConfig:
    """`section` is the file's `router_settings:` mapping (empty when absent); environment variables win."""
    d = RouterConfig()
    strategy = str(env.get("FORGE_ROUTING_STRATEGY") or section.get("routing_strategy") or d.routing_strategy)
    if strategy not in STRATEGIES:
        raise ConfigError(f"router_settings.routing_strategy {strategy!r} is not one of {sorted(STRATEGIES)}")
    allowed_fails = int(_number(section, env, "allowed_fails", "FORGE_ALLOWED_FAILS", d.allowed_fails, whole=True))
    if allowed_fails < 1:
        raise ConfigError("router_settings.allowed_fails must be at least 1")
    timeout = _number(section, env, "timeout", "FORGE_ROUTER_TIMEOUT", None)
    if timeout is not None and timeout <= 0:
        raise ConfigError("router_settings.timeout must be positive")
    return RouterConfig(
        routing_strategy=strategy,
        num_retries=int(_number(section, env, "num_retries", "FORGE_NUM_RETRIES", d.num_retries, whole=True)),
        retry_after=_number(section, env, "retry_after", "FORGE_RETRY_AFTER", d.retry_after),
        max_retry_wait=_number(section, env, "max_retry_wait", "FORGE_MAX_RETRY_WAIT", d.max_retry_wait),
        timeout=timeout,
        fallbacks=_fallbacks(section.get("fallbacks"), "fallbacks"),
        context_window_fallbacks=_fallbacks(section.get("context_window_fallbacks"), "context_window_fallbacks"),
        default_fallbacks=_names(section.get("default_fallbacks") or [], "default_fallbacks"),
        allowed_fails=allowed_fails,
        cooldown_time=_number(section, env, "cooldown_time", "FORGE_COOLDOWN_TIME", d.cooldown_time),
    )


def _number(
    section: Mapping[str, Any], env: Mapping[str, str], key: str, var: str, default: Any, whole: bool = False
) -> Any:
    raw: Any = env.get(var)
    where = var if raw else f"router_settings.{key}"
    if not raw:
        raw = section.get(key)
    if raw is None or raw == "":
        return default
    if isinstance(raw, bool):
        raise ConfigError(f"{where} must be a number, got {raw!r}")
    try:
        value = int(raw) if whole else float(raw)
    except (TypeError, ValueError):
        kind = "a whole number" if whole else "a number"
        raise ConfigError(f"{where} must be {kind}, got {raw!r}") from None
    if value < 0:
        raise ConfigError(f"{where} must not be negative, got {raw!r}")
    return value


def _fallbacks(raw: Any, key: str) -> dict[str, tuple[str, ...]]:
    """LiteLLM writes a list of one-key mappings (`[{"gpt-4o": ["claude"]}]`); a plain mapping is read too."""
    if raw is None:
        return {}
    entries = raw if isinstance(raw, list) else [raw]
    out: dict[str, tuple[str, ...]] = {}
    for i, entry in enumerate(entries):
        if not isinstance(entry, Mapping) or not entry:
            raise ConfigError(f"router_settings.{key}[{i}] must map a model group to its fallback groups")
        for group, targets in entry.items():
            out[str(group)] = _names(targets, f"{key}[{i}].{group}")
    return out


def _names(raw: Any, where: str) -> tuple[str, ...]:
    items = [raw] if isinstance(raw, str) else raw
    if not isinstance(items, list) or not all(isinstance(n, str) and n for n in items):
        raise ConfigError(f"router_settings.{where} must be a list of model group names")
    return tuple(items)
