"""The configuration part of RoutingService: GetConfig (the running configuration, secrets masked; seed 003's
/api/config/) and ReloadConfig (re-read the file and apply it without a restart; /api/config/reload/).

The servicer knows nothing about how configuration is read or applied: the composition root hands it a
`ConfigControl` (server/config_control.py)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from forge.routing.v1 import routing_pb2
from google.protobuf import struct_pb2

from .context import CallContext
from .routing_convert import require_admin
from .timestamps import timestamp

__all__ = ["ConfigControl", "ConfigServicer", "ConfigSnapshot", "ReloadOutcome"]


@dataclass(frozen=True, slots=True)
class ConfigSnapshot:
    """The running configuration, rendered to JSON-able values with every secret already masked."""

    sections: Mapping[str, Mapping[str, Any]]
    """"services", "routing", "security", "limits", "cache"."""
    model_list: Sequence[Mapping[str, Any]]
    source: str
    loaded_at: float
    revision: str


@dataclass(frozen=True, slots=True)
class ReloadOutcome:
    success: bool
    message: str
    revision: str
    loaded_at: float
    changed: Sequence[str] = ()
    errors: Sequence[str] = field(default_factory=tuple)


class ConfigControl(Protocol):
    def snapshot(self) -> ConfigSnapshot: ...

    async def reload(self, validate_only: bool) -> ReloadOutcome:
        """Raises ForgeError FAILED_PRECONDITION when there is no file to re-read; a bad file is an outcome
        with `errors`, and the running configuration stays in force."""
        ...


def _struct(values: Mapping[str, Any]) -> struct_pb2.Struct:
    s = struct_pb2.Struct()
    s.update(values)
    return s


class ConfigServicer:
    def __init__(self, control: ConfigControl) -> None:
        self._control = control

    async def GetConfig(self, request: routing_pb2.GetConfigRequest, context: CallContext) -> routing_pb2.Config:
        require_admin("reading the configuration")
        snap = self._control.snapshot()
        model_list = struct_pb2.ListValue()
        for entry in snap.model_list:
            model_list.add_struct().update(entry)
        s = snap.sections
        return routing_pb2.Config(
            services=_struct(s.get("services", {})),
            routing=_struct(s.get("routing", {})),
            security=_struct(s.get("security", {})),
            model_list=model_list,
            limits=_struct(s.get("limits", {})),
            cache=_struct(s.get("cache", {})),
            source=snap.source,
            loaded_at=timestamp(snap.loaded_at),
            revision=snap.revision,
        )

    async def ReloadConfig(
        self, request: routing_pb2.ReloadConfigRequest, context: CallContext
    ) -> routing_pb2.ReloadConfigResponse:
        require_admin("reloading the configuration")
        out = await self._control.reload(request.validate_only)
        return routing_pb2.ReloadConfigResponse(
            success=out.success,
            message=out.message,
            changed=list(out.changed),
            errors=list(out.errors),
            revision=out.revision,
            loaded_at=timestamp(out.loaded_at),
        )
