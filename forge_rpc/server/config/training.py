"""The `training:` section of the config file and its environment twins."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["TrainingConfig", "parse_training"]


@dataclass(frozen=True, slots=True)
class TrainingConfig:
    pass


def parse_training(section: Mapping[str, Any], env: Mapping[str, str]) -> TrainingConfig:
    """`section` is the file's `training:` mapping (empty when absent); environment variables win over it."""
    return TrainingConfig()
