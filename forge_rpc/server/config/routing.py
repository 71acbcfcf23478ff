"""The `routing:` section of the config file and its environment twins."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["RoutingConfig", "parse_routing"]


@dataclass(frozen=True, slots=True)
class RoutingConfig:
    pass


def parse_routing(section: Mapping[str, Any], env: Mapping[str, str]) -> RoutingConfig:
    """`section` is the file's `routing:` mapping (empty when absent); environment variables win over it."""
    return RoutingConfig()
