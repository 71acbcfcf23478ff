"""The provider-key part of RoutingService: GetProviderKeyStatus, TestProviderKey and UpdateProviderKey (seed
003's /api/api-keys/…). Keys are shown only as a masked preview and never echoed, logged or put in errors."""

from __future__ import annotations

import time

from forge.routing.v1 import routing_pb2

from ..adapters.providers.directory import ProviderDirectory, ServiceView
from ..adapters.providers.key_check import KeyCheck, check_key
from ..domain import FailedPrecondition, FieldViolation, InvalidArgument, NotFound
from .context import CallContext, principal
from .key_vault import KeyVault
from .routing_convert import require_admin
from .timestamps import timestamp

__all__ = ["ProviderKeysServicer", "mask_key"]

MAX_KEY_CHARS = 1024


def mask_key(key: str) -> str:
    """Enough to recognise a key, never enough to use it: "sk-…abcd" for a long key, less for short ones."""
    if len(key) >= 16:
        return f"{key[:3]}…{key[-4:]}"
    if len(key) >= 8:
        return f"…{key[-2:]}"
    return "…"


def _service(directory: ProviderDirectory, value: str) -> ServiceView:
    name = value.strip().strip("/")
    if not name:
        raise InvalidArgument([FieldViolation("service", "required")])
    view = directory.service(name)
    if view is None:
        raise NotFound("service", name)
    if not view.accepts_key:
        raise FailedPrecondition(f"service {name!r} ({view.adapter}) takes no API key", "SERVICE_TAKES_NO_KEY")
    return view


def _new_key(value: str) -> str:
    key = value.strip()
    # The key itself is never quoted back: a typo'd secret in an error message is still a secret.
    if not key:
        raise InvalidArgument([FieldViolation("api_key", "required")])
    if len(key) > MAX_KEY_CHARS:
        raise InvalidArgument([FieldViolation("api_key", f"at most {MAX_KEY_CHARS} characters")])
    if any(c.isspace() or not c.isprintable() for c in key):
        raise InvalidArgument([FieldViolation("api_key", "must not contain spaces or control characters")])
    return key


class ProviderKeysServicer:
    def __init__(self, directory: ProviderDirectory, vault: KeyVault) -> None:
        self._directory = directory
        self._vault = vault

    def _status(self, view: ServiceView) -> routing_pb2.ProviderKeyStatus:
        key = self._directory.api_key(view.name)
        check = self._vault.last_check(view.name, key)
        stored = self._vault.info(view.name)
        status = routing_pb2.ProviderKeyStatus(
            service=view.name,
            configured=bool(key),
            key_preview=mask_key(key) if key else "",
            source=view.key_source,
            env_var=view.env_var,
        )
        if check is not None:
            status.valid = check.valid
            status.last_tested_at.CopyFrom(timestamp(check.tested_at))
        if stored is not None:
            status.updated_at.CopyFrom(timestamp(stored.updated_at))
        return status

    async def GetProviderKeyStatus(
        self, request: routing_pb2.GetProviderKeyStatusRequest, context: CallContext
    ) -> routing_pb2.ProviderKeyStatus:
        require_admin("reading a provider key's status")
        return self._status(_service(self._directory, request.service))

    async def _check(self, view: ServiceView, key: str) -> KeyCheck:
        spec = self._directory.spec(view.name)
        assert spec is not None  # the view came from the directory a moment ago
        check = await check_key(spec, key)
        # Remembered for the key in use only: a candidate key's result says nothing about the configured one.
        if check.valid is not None and key == self._directory.api_key(view.name):
            self._vault.record_check(view.name, key, check.valid, time.time())
        return check

    async def TestProviderKey(
        self, request: routing_pb2.TestProviderKeyRequest, context: CallContext
    ) -> routing_pb2.TestProviderKeyResponse:
        # Admin only: it spends the server's credentials, and would otherwise make forge a key oracle.
        require_admin("testing a provider key")
        view = _service(self._directory, request.service)
        key = _new_key(request.api_key) if request.api_key.strip() else self._directory.api_key(view.name)
        details = routing_pb2.KeyTestDetails(service=view.name)
        if not key:
            message = f"no API key is configured for {view.name}; pass api_key or set {view.env_var}"
            return routing_pb2.TestProviderKeyResponse(success=False, valid=False, message=message, details=details)
        check = await self._check(view, key)
        details.model_count, details.latency_ms = check.model_count, check.latency_ms
        if check.valid:
            message = f"API key is valid. {check.model_count} models available."
        elif check.valid is False:
            message = f"API key is not valid for {view.name}: {check.detail}"
        else:
            message = f"could not test the key: {check.detail}"
        return routing_pb2.TestProviderKeyResponse(
            success=check.valid is not None, valid=bool(check.valid), message=message, details=details
        )

    async def UpdateProviderKey(
        self, request: routing_pb2.UpdateProviderKeyRequest, context: CallContext
    ) -> routing_pb2.UpdateProviderKeyResponse:
        require_admin("changing a provider API key")
        view = _service(self._directory, request.service)
        key = _new_key(request.api_key)
        note = ""
        check = await self._check(view, key) if request.test else None
        if check is not None:
            if check.valid is False:
                raise FailedPrecondition(
                    f"{view.name} rejected the new API key ({check.detail}); it was not stored", "PROVIDER_KEY_INVALID"
                )
            note = " (tested: valid)" if check.valid else f" (not tested: {check.detail})"
        await self._vault.put(view.name, key, principal.get().user_id or principal.get().username)
        if check is not None and check.valid is not None:
            self._vault.record_check(view.name, key, check.valid, time.time())
        refreshed = self._directory.service(view.name) or view
        return routing_pb2.UpdateProviderKeyResponse(
            success=True,
            message=f"API key for {view.name} stored encrypted; requests use it from now on{note}",
            status=self._status(refreshed),
        )
