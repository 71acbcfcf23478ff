"""AuthService and the authentication/access policy (issue #5)."""

from __future__ import annotations

from .component import Component, Core

__all__ = ["auth_component"]


def auth_component(core: Core) -> Component:
    return Component("auth")
