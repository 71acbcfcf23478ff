"""The `limits:` section of the config file and its environment twins: rate limits, budgets, the response cache.

```yaml
limits:
  anonymous:     {rpm: 100}                  # FORGE_RATE_LIMIT_ANON_RPM; per client address
  authenticated: {rpm: 1000, tpm: 200000}    # FORGE_RATE_LIMIT_USER_RPM; per user
  api_key:       {}                          # per key (a key's own quota overrides these)
  models:                                    # per model, shared by all callers; globs allowed
    gpt-4o: {rpm: 500, tpm: 30000, concurrent_streams: 20}
  budget_period: month                       # budgets (budget_usd, token_quota): month (UTC), day, or seconds
  default_max_tokens: 1024
  cache: {enabled: true, ttl_s: 3600, max_entries: 10000}
```

Each rates mapping takes `rpm`, `tpm`, `concurrent_streams`, `budget_usd`, `token_quota`; 0 (or absent) means no
limit. Seed 003's defaults: 100 requests/minute anonymous, 1,000 authenticated.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ...domain.limits import BudgetPeriod, LimitRules, Rates
from .errors import ConfigError

__all__ = ["CacheConfig", "LimitsConfig", "parse_limits"]

_RATE_KEYS = ("rpm", "tpm", "concurrent_streams", "budget_usd", "token_quota")


@dataclass(frozen=True, slots=True)
class CacheConfig:
    """The exact-match response cache for deterministic chat requests (temperature 0 or a seed)."""

    enabled: bool = False
    """Off unless turned on (`FORGE_CACHE_ENABLED`): a cached answer is replayed even when the upstream model
    changed behind the same name, and a seeded request sent twice to test determinism would test the cache."""
    ttl_s: float = 3600.0
    """How long an answer is served (`FORGE_CACHE_TTL_S`); WarmCache may set its own."""
    max_entries: int = 10_000
    """In-process backend only: least recently used entries are evicted beyond this. In Redis the TTL and the
    server's own `maxmemory` policy bound the cache."""


@dataclass(frozen=True, slots=True)
class LimitsConfig:
    anonymous: Rates = field(default_factory=lambda: Rates(rpm=100))
    """Callers without a user id, counted per client address (`x-forge-client-ip` from the edge, else the gRPC
    peer). With auth off every caller is the local operator without a user id, so this applies per address."""
    authenticated: Rates = field(default_factory=lambda: Rates(rpm=1000))
    """Per user, whichever key or session the call used."""
    api_key: Rates = field(default_factory=Rates)
    """Per API key, on top of its user's limits; the key's stored quota overrides each field it sets."""
    models: tuple[tuple[str, Rates], ...] = ()
    """Per model name or glob (`openai/*`), shared by every caller; one counter per configured entry."""
    budget_period: BudgetPeriod = field(default_factory=BudgetPeriod)
    """Budgets (`budget_usd`, `token_quota`) count per calendar month in UTC (`month`, the default, as the usage
    section's monthly token quota), per UTC day (`day`), or per a number of seconds aligned to the Unix epoch."""
    default_max_tokens: int = 1024
    """The completion reserved for token limits and budgets when a request sets no `max_tokens`."""
    stream_lease_s: int = 3600
    """Redis only: a stream slot whose replica died without releasing it frees itself after this long."""
    key_prefix: str = "forge:"
    """Prefix of every Redis key (limits and cache), so several deployments can share one Redis."""
    exempt: tuple[str, ...] = ("/forge.routing.v1.RoutingService/GetHealth",)
    """RPCs never limited: a health probe answered 429 would take a healthy replica out of its balancer."""
    cache: CacheConfig = field(default_factory=CacheConfig)
    anonymous_without_auth: bool = True
    """Whether `anonymous` also limits the local operator when auth is off. From the config file or environment
    it is true only when `limits.anonymous` or `FORGE_RATE_LIMIT_ANON_*` is set: a single-user install is not
    throttled by the seed's 100 requests/minute for strangers unless its owner asks for it."""

    @property
    def anon_rpm(self) -> int:
        return self.anonymous.rpm

    @property
    def user_rpm(self) -> int:
        return self.authenticated.rpm

    def rules(self) -> LimitRules:
        return LimitRules(self.anonymous, self.authenticated, self.api_key, self.models)


def parse_limits(section: Mapping[str, Any], env: Mapping[str, str]) -> LimitsConfig:
    """`section` is the file's `limits:` mapping (empty when absent); environment variables win over it."""
    d = LimitsConfig()
    anonymous = _rates(section.get("anonymous"), "limits.anonymous", d.anonymous)
    authenticated = _rates(section.get("authenticated"), "limits.authenticated", d.authenticated)
    anonymous = _env_rates(env, "ANON", anonymous)
    anonymous_set = "anonymous" in section or any(k.startswith("FORGE_RATE_LIMIT_ANON_") for k in env)
    authenticated = _env_rates(env, "USER", authenticated)
    models_raw = section.get("models") or {}
    if not isinstance(models_raw, Mapping):
        raise ConfigError("limits.models must map model names (or globs) to rates")
    models = tuple((str(name), _rates(raw, f"limits.models.{name}", Rates())) for name, raw in models_raw.items())
    cache_raw = section.get("cache") or {}
    if not isinstance(cache_raw, Mapping):
        raise ConfigError("limits.cache must be a mapping")
    cache = CacheConfig(
        enabled=_bool(env.get("FORGE_CACHE_ENABLED"), _file_bool(cache_raw, "enabled", False)),
        ttl_s=_number(env.get("FORGE_CACHE_TTL_S") or cache_raw.get("ttl_s", 3600.0), "limits.cache.ttl_s", 1e-3),
        max_entries=_int(cache_raw.get("max_entries", 10_000), "limits.cache.max_entries", 1),
    )
    exempt = section.get("exempt", d.exempt)
    if not isinstance(exempt, list | tuple) or not all(isinstance(m, str) for m in exempt):
        raise ConfigError("limits.exempt must be a list of RPC names (/package.Service/Method)")
    return LimitsConfig(
        anonymous=anonymous,
        authenticated=authenticated,
        api_key=_rates(section.get("api_key"), "limits.api_key", d.api_key),
        models=models,
        budget_period=_period(section.get("budget_period", "month")),
        default_max_tokens=_int(
            section.get("default_max_tokens", d.default_max_tokens), "limits.default_max_tokens", 0
        ),
        stream_lease_s=_int(section.get("stream_lease_s", d.stream_lease_s), "limits.stream_lease_s", 1),
        key_prefix=str(section.get("key_prefix", d.key_prefix)),
        exempt=tuple(exempt),
        cache=cache,
        anonymous_without_auth=anonymous_set,
    )


def _period(raw: Any) -> BudgetPeriod:
    if raw == "month":
        return BudgetPeriod()
    if raw == "day":
        return BudgetPeriod(86_400)
    if isinstance(raw, str) and not raw.strip().isdigit():
        raise ConfigError(f"limits.budget_period must be month, day or a number of seconds, got {raw!r}")
    return BudgetPeriod(_int(raw, "limits.budget_period", 1))


def _rates(raw: Any, where: str, default: Rates) -> Rates:
    if raw is None:
        return default
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{where} must be a mapping of {', '.join(_RATE_KEYS)}")
    unknown = set(raw) - set(_RATE_KEYS)
    if unknown:
        raise ConfigError(f"{where} has unknown keys {sorted(unknown)}; known: {', '.join(_RATE_KEYS)}")
    return Rates(
        rpm=_int(raw.get("rpm", default.rpm), f"{where}.rpm", 0),
        tpm=_int(raw.get("tpm", default.tpm), f"{where}.tpm", 0),
        concurrent_streams=_int(
            raw.get("concurrent_streams", default.concurrent_streams), f"{where}.concurrent_streams", 0
        ),
        budget_usd=_number(raw.get("budget_usd", default.budget_usd), f"{where}.budget_usd", 0),
        token_quota=_int(raw.get("token_quota", default.token_quota), f"{where}.token_quota", 0),
    )


def _env_rates(env: Mapping[str, str], who: str, rates: Rates) -> Rates:
    rpm = env.get(f"FORGE_RATE_LIMIT_{who}_RPM")
    tpm = env.get(f"FORGE_RATE_LIMIT_{who}_TPM")
    return Rates(
        rpm=_int(rpm, f"FORGE_RATE_LIMIT_{who}_RPM", 0) if rpm else rates.rpm,
        tpm=_int(tpm, f"FORGE_RATE_LIMIT_{who}_TPM", 0) if tpm else rates.tpm,
        concurrent_streams=rates.concurrent_streams,
        budget_usd=rates.budget_usd,
        token_quota=rates.token_quota,
    )


def _number(raw: Any, where: str, minimum: float) -> float:
    if isinstance(raw, bool):
        raise ConfigError(f"{where} must be a number, got {raw!r}")
    try:
        value = float(raw)
    except (TypeError, ValueError):
        raise ConfigError(f"{where} must be a number, got {raw!r}") from None
    if not (math.isfinite(value) and value >= minimum):
        raise ConfigError(f"{where} must be a finite number of at least {minimum:g}, got {raw!r}")
    return value


def _int(raw: Any, where: str, minimum: int) -> int:
    value = _number(raw, where, minimum)
    if value != int(value):
        raise ConfigError(f"{where} must be a whole number, got {raw!r}")
    return int(value)


def _file_bool(section: Mapping[str, Any], key: str, default: bool) -> bool:
    raw = section.get(key, default)
    if not isinstance(raw, bool):
        raise ConfigError(f"limits.cache.{key} must be true or false, got {raw!r}")
    return raw


def _bool(raw: str | None, default: bool) -> bool:
    if raw is None or raw == "":
        return default
    value = raw.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"FORGE_CACHE_ENABLED must be true or false, got {raw!r}")
