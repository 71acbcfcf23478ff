"""Model names are checked at the door, for every RPC and transport: a name longer than 256 characters or
with characters no model name uses (whitespace, quotes, angle brackets, control characters, `..` path segments)
is INVALID_ARGUMENT before any servicer, provider URL or log line sees it."""

from __future__ import annotations

from typing import Any

from ..domain import InvalidArgument
from ..domain.validation import model_name_violation
from ..services.context import CallContext
from .policy import CallInfo, Release
from .request_models import model_fields

__all__ = ["ModelNamePolicy"]


class ModelNamePolicy:
    async def admit(self, call: CallInfo, request: Any, context: CallContext) -> Release | None:
        bad = [v for path, name in model_fields(request) if (v := model_name_violation(name, path)) is not None]
        if bad:
            raise InvalidArgument(bad)
        return None
