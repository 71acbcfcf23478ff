"""The `auth:` section of the config file and its environment twins."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["AuthConfig", "parse_auth"]


@dataclass(frozen=True, slots=True)
class AuthConfig:
    pass


def parse_auth(section: Mapping[str, Any], env: Mapping[str, str]) -> AuthConfig:
    """`section` is the file's `auth:` mapping (empty when absent); environment variables win over it."""
    return AuthConfig()
