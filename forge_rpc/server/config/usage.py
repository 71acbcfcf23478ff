"""The `usage:` section: what the usage ledger keeps and how usage is priced and capped.

```yaml
usage:
  log_content: false          # FORGE_LOG_CONTENT: keep prompt and response text in the ledger
  token_quota: 1000000        # FORGE_TOKEN_QUOTA: tokens per user per calendar month (UTC); absent = none
  token_quotas: {alice: 5000000}
  prices:                     # $ per token, over litellm's cost map (model_list `model_info` costs also count)
    my-finetune: {input_cost_per_token: 0.000001, output_cost_per_token: 0.000002}
```
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .errors import ConfigError

__all__ = ["UsageConfig", "parse_usage"]


@dataclass(frozen=True, slots=True)
class UsageConfig:
    log_content: bool = False
    """Store prompt and response text with each ledger row (off by default: they may be personal data)."""
    token_quota: int | None = None
    """Default tokens per user per calendar month, answered as `quota_remaining`; None = no quota."""
    token_quotas: Mapping[str, int] = field(default_factory=dict)
    """Per-user overrides of `token_quota`."""
    prices: Mapping[str, tuple[float, float]] = field(default_factory=dict)
    """model → ($ per input token, $ per output token), winning over litellm's cost map."""


def _price(name: str, raw: Any) -> tuple[float, float]:
    if not isinstance(raw, Mapping):
        raise ConfigError(f"usage.prices.{name} must be a mapping of input_cost_per_token/output_cost_per_token")
    try:
        return float(raw.get("input_cost_per_token", 0.0)), float(raw.get("output_cost_per_token", 0.0))
    except (TypeError, ValueError):
        raise ConfigError(f"usage.prices.{name}: costs must be numbers") from None


def model_info_prices(model_list: Any) -> dict[str, tuple[float, float]]:
    """Costs given in LiteLLM's `model_list[].model_info`, keyed by model_name."""
    out: dict[str, tuple[float, float]] = {}
    for entry in model_list if isinstance(model_list, list) else []:
        info = entry.get("model_info") if isinstance(entry, Mapping) else None
        if isinstance(info, Mapping) and ("input_cost_per_token" in info or "output_cost_per_token" in info):
            out[str(entry["model_name"])] = _price(str(entry["model_name"]), info)
    return out


def parse_usage(section: Mapping[str, Any], env: Mapping[str, str], model_list: Any = None) -> UsageConfig:
    log_raw = env.get("FORGE_LOG_CONTENT")
    log_content = (
        log_raw.strip().lower() in ("1", "true", "yes", "on") if log_raw else bool(section.get("log_content", False))
    )
    quota_raw = env.get("FORGE_TOKEN_QUOTA") or section.get("token_quota")
    try:
        quota = int(quota_raw) if quota_raw not in (None, "") else None
        quotas = {str(k): int(v) for k, v in (section.get("token_quotas") or {}).items()}
    except (TypeError, ValueError, AttributeError):
        raise ConfigError("usage.token_quota and usage.token_quotas must be integers") from None
    prices = model_info_prices(model_list)
    raw_prices = section.get("prices") or {}
    if not isinstance(raw_prices, Mapping):
        raise ConfigError("usage.prices must be a mapping of model → costs")
    prices.update({str(k): _price(str(k), v) for k, v in raw_prices.items()})
    return UsageConfig(log_content=log_content, token_quota=quota, token_quotas=quotas, prices=prices)
