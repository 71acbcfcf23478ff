"""The `limits:` section of the config file and its environment twins."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["LimitsConfig", "parse_limits"]


@dataclass(frozen=True, slots=True)
class LimitsConfig:
    pass


def parse_limits(section: Mapping[str, Any], env: Mapping[str, str]) -> LimitsConfig:
    """`section` is the file's `limits:` mapping (empty when absent); environment variables win over it."""
    return LimitsConfig()
