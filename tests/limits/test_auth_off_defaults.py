"""With auth off (the embedded default) the caller is the install's own operator: the seed's 100 requests/minute
for anonymous strangers does not throttle it unless the owner configures an anonymous limit."""

from __future__ import annotations

import dataclasses

import grpc
import pytest
from forge.models.v1 import models_pb2, models_pb2_grpc

from forge_rpc.server.config import load_config
from forge_rpc.server.config.limits import parse_limits
from forge_rpc.testing import running_forge
from tests.conftest import forge_config
from tests.fakes import FakeUpstream

pytestmark = pytest.mark.asyncio


def test_the_anonymous_default_is_for_strangers_only_unless_configured() -> None:
    assert load_config(env={}).limits.anonymous_without_auth is False
    assert load_config(env={"FORGE_RATE_LIMIT_ANON_RPM": "5"}).limits.anonymous_without_auth is True
    assert parse_limits({"anonymous": {"rpm": 5}}, {}).anonymous_without_auth is True


async def count_admitted(fake: FakeUpstream, section: dict[str, object], calls: int) -> int:
    cfg = dataclasses.replace(forge_config(fake), limits=parse_limits(section, {}))
    admitted = 0
    refusals: list[grpc.StatusCode] = []
    async with running_forge(cfg, http=False) as app:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{app.grpc_port}") as channel:
            stub = models_pb2_grpc.ModelsServiceStub(channel)
            for _ in range(calls):
                try:
                    await stub.SearchModelLibrary(models_pb2.SearchModelLibraryRequest(page_size=1))
                    admitted += 1
                except grpc.aio.AioRpcError as err:
                    refusals.append(err.code())
    assert set(refusals) <= {grpc.StatusCode.RESOURCE_EXHAUSTED}
    return admitted


async def test_auth_off_is_not_throttled_by_the_anonymous_default(fake: FakeUpstream) -> None:
    assert await count_admitted(fake, {}, 120) == 120


async def test_an_explicit_anonymous_limit_applies_with_auth_off(fake: FakeUpstream) -> None:
    assert await count_admitted(fake, {"anonymous": {"rpm": 3}}, 5) == 3
