"""Limits and cache tests: a real forge (or its real parts) over both backends — in process, and a real
redis-server shared the way replicas share it. Every test gets its own Redis key prefix, so none sees another's
counters or entries."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Sequence
from typing import Any, cast

import pytest

from forge_rpc.domain.limits import Rates
from forge_rpc.server.config import ForgeConfig
from forge_rpc.server.config.limits import CacheConfig, LimitsConfig
from forge_rpc.services.context import CallContext
from gateway.invoke import LocalContext
from tests.conftest import forge_config
from tests.fakes import FakeUpstream

BACKENDS = ["memory", "redis"]


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest, redis_url: str) -> str | None:
    """The Redis URL for the shared backend, None for the in-process one."""
    return redis_url if request.param == "redis" else None


def unique_prefix() -> str:
    return f"t-{uuid.uuid4().hex[:12]}:"


def limited(
    fake: FakeUpstream,
    redis: str | None = None,
    *,
    anonymous: Rates | None = None,
    cache: CacheConfig | None = None,
    key_prefix: str | None = None,
    **fields: Any,
) -> ForgeConfig:
    """forge in front of the fake with these limits (anonymous: no limit unless given) and a fresh key prefix."""
    cfg = forge_config(fake, discover_ollama=False)
    limits = LimitsConfig(
        anonymous=anonymous or Rates(),
        key_prefix=key_prefix or unique_prefix(),
        cache=cache or CacheConfig(),
        **fields,
    )
    return dataclasses.replace(cfg, limits=limits, storage=dataclasses.replace(cfg.storage, redis_url=redis))


def call_context(metadata: Sequence[tuple[str, str]] = (), peer: str = "edge") -> CallContext:
    """The edge's in-process call context, as a servicer or policy sees a call (its metadata is str-only, which
    the protocol's wider `str | bytes` accepts at run time)."""
    return cast(CallContext, LocalContext(metadata, None, peer))
