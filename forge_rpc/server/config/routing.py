"""The `routing:` section of the config file and its environment twins."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import ConfigError

__all__ = ["RoutingConfig", "parse_routing"]

MIN_SECRET_CHARS = 32


@dataclass(frozen=True, slots=True)
class RoutingConfig:
    secret_key: str | None = field(default=None, repr=False)
    """Server key that seals provider API keys stored through the API (`FORGE_SECRET_KEY`, at least 32
    characters, e.g. `openssl rand -base64 32`). Replicas sharing a database must share it. None keeps a
    generated key in `data_dir/secret.key` (mode 0600), made the first time a key is stored."""
    rule_cache_ttl_s: float = 5.0
    """How often each replica re-reads routing rules and stored provider keys, to see other replicas' changes
    (`FORGE_ROUTING_REFRESH_S`); its own changes apply at once."""
    config_path: Path | None = None
    """The file ReloadConfig re-reads: `--config` or `FORGE_CONFIG`. None when forge was configured without
    a file (then there is nothing to reload)."""


_KEYS = frozenset({"secret_key", "rule_cache_ttl_s"})


def parse_routing(section: Mapping[str, Any], env: Mapping[str, str], source: Path | None = None) -> RoutingConfig:
    """`section` is the file's `routing:` mapping (empty when absent); environment variables win over it.
    `source` is the config file that was read, if any."""
    unknown = sorted(set(section) - _KEYS)
    if unknown:
        raise ConfigError(f"routing: unknown setting(s) {', '.join(unknown)}; known: {', '.join(sorted(_KEYS))}")
    secret = env.get("FORGE_SECRET_KEY") or section.get("secret_key") or None
    if secret is not None and (not isinstance(secret, str) or len(secret) < MIN_SECRET_CHARS):
        raise ConfigError(f"FORGE_SECRET_KEY (routing.secret_key) must be at least {MIN_SECRET_CHARS} characters")
    raw_ttl = env.get("FORGE_ROUTING_REFRESH_S") or section.get("rule_cache_ttl_s", 5.0)
    try:
        ttl = float(raw_ttl)
    except (TypeError, ValueError):
        raise ConfigError(
            f"FORGE_ROUTING_REFRESH_S (routing.rule_cache_ttl_s) must be a number, got {raw_ttl!r}"
        ) from None
    if not 0.1 <= ttl <= 3600:
        raise ConfigError("FORGE_ROUTING_REFRESH_S (routing.rule_cache_ttl_s) must be between 0.1 and 3600 seconds")
    path = source or (Path(env["FORGE_CONFIG"]) if env.get("FORGE_CONFIG") else None)
    return RoutingConfig(secret_key=secret, rule_cache_ttl_s=ttl, config_path=path)
