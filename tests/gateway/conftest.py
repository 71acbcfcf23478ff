"""Edge fixtures: a real forge (core + HTTP edge) on free ports, run both ways — the edge calling the core in
process (`local`) and over a gRPC channel as when deployed apart (`split`)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest
import pytest_asyncio

from forge_rpc.server.app import ForgeApp
from forge_rpc.testing import running_forge
from tests.conftest import forge_config
from tests.fakes import FakeUpstream


@pytest_asyncio.fixture(params=["local", "split"])
async def edge(request: pytest.FixtureRequest, fake: FakeUpstream) -> AsyncIterator[ForgeApp]:
    """forge with its edge; `app.http_port` is the HTTP port. Parametrized over both invokers."""
    await fake.reset()
    async with running_forge(forge_config(fake), split=request.param == "split") as app:
        yield app


@pytest_asyncio.fixture
async def local_edge(fake: FakeUpstream) -> AsyncIterator[ForgeApp]:
    """forge with its edge, in-process invoker only (for tests where the transport makes no difference)."""
    await fake.reset()
    async with running_forge(forge_config(fake)) as app:
        yield app


@pytest_asyncio.fixture
async def http(edge: ForgeApp) -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(base_url=f"http://127.0.0.1:{edge.http_port}") as session:
        yield session
