"""The authentication and access policy: installed only with auth on, first in the pipeline, so every RPC on
every transport (gRPC, REST, SSE, /ws, the OpenAI routes) is checked the same way.

Credentials come from call metadata: `authorization: Bearer <access JWT | API key>` or `x-api-key: <API key>`
(the edge forwards both headers as metadata). The caller becomes the `principal` the servicers and the limits
policy see; then the RPC's access entry (access.py) decides, and a key limited to some models may only name
those.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..adapters.auth import CredentialResolver
from ..domain import ForgeError, PermissionDenied
from ..domain.identity import ANONYMOUS, Principal
from ..services.context import CallContext, metadata_value, principal
from .access import Access, Level, access_for, authorize
from .policy import CallInfo, Release
from .request_models import model_fields

__all__ = ["AuthPolicy", "bearer_credential"]


def bearer_credential(context: CallContext) -> str | None:
    """The credential the call carries, or None. A non-Bearer `authorization` is returned whole, so it fails
    as a malformed token rather than passing as no credentials at all."""
    header = metadata_value(context, "authorization")
    if header is not None:
        scheme, _, value = header.strip().partition(" ")
        return value.strip() if scheme.lower() == "bearer" else header
    key = metadata_value(context, "x-api-key")
    return key.strip() if key is not None else None


class AuthPolicy:
    def __init__(self, resolver: CredentialResolver, default_model: Callable[[], str | None]) -> None:
        """`default_model` names the model an empty `model` field stands for (checked against a key's models)."""
        self._resolver = resolver
        self._default_model = default_model

    async def admit(self, call: CallInfo, request: Any, context: CallContext) -> Release | None:
        access = access_for(call.full_name)
        who = await self._caller(access, bearer_credential(context))
        principal.set(who)
        authorize(who, access, call.method)
        if who.allowed_models:
            self._check_models(who, access, request)
        return None

    async def _caller(self, access: Access, credential: str | None) -> Principal:
        if credential is None:
            return ANONYMOUS
        if access.level is Level.PUBLIC:
            # A stale token sent along with Login or Refresh (clients attach it to every call) must not block
            # the very calls that replace it.
            try:
                return await self._resolver.resolve(credential)
            except ForgeError:
                return ANONYMOUS
        return await self._resolver.resolve(credential)

    def _check_models(self, who: Principal, access: Access, request: Any) -> None:
        for path, name in model_fields(request):
            model = name
            if not model and access.spends_model:
                model = self._default_model() or ""
            if model and not who.may_use_model(model):
                shown = ", ".join(sorted(who.allowed_models))
                raise PermissionDenied(f"{path}: this API key may use only {shown}, not {model!r}", "MODEL_NOT_ALLOWED")
