"""The `router_settings:` section (LiteLLM proxy's name) of the config file and its environment twins."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["RouterConfig", "parse_router"]


@dataclass(frozen=True, slots=True)
class RouterConfig:
    pass


def parse_router(section: Mapping[str, Any], env: Mapping[str, str]) -> RouterConfig:
    """`section` is the file's `router:` mapping (empty when absent); environment variables win over it."""
    return RouterConfig()
