"""ConfigError, shared by every config section module."""

from __future__ import annotations

__all__ = ["ConfigError"]


class ConfigError(ValueError):
    """The configuration file or environment is invalid; the message names the setting."""
