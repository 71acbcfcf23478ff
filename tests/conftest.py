"""Shared fixtures: one fake upstream process per session, a real forge per test on a free port."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")  # as forge_rpc sets it; grpc is imported just below

import grpc
import pytest
import pytest_asyncio

from forge_rpc.server.app import ForgeApp
from forge_rpc.server.config import DeploymentConfig, ForgeConfig, ProvidersConfig, StorageConfig
from forge_rpc.server.database import EmbeddedPostgres
from forge_rpc.testing import running_forge
from forge_rpc.testing.redis_server import RedisServer
from tests.fakes import FakeUpstream

# The database every forge a test starts uses (set once per session by `apps_database`).
_APPS_DATABASE: list[str] = []


@pytest_asyncio.fixture(scope="session")
async def fake() -> AsyncIterator[FakeUpstream]:
    async with FakeUpstream() as upstream:
        yield upstream


@pytest_asyncio.fixture(scope="session", autouse=True)
async def apps_database(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[str]:
    """One embedded PostgreSQL for the forges tests start (store tests run their own, with a database per
    module); fsync off, as a test cluster is thrown away."""
    server = EmbeddedPostgres(tmp_path_factory.mktemp("apps-postgres"), durable=False)
    url = await server.start()
    _APPS_DATABASE.append(url)
    yield url
    await server.stop()


@pytest_asyncio.fixture(scope="session")
async def redis_url() -> AsyncIterator[str]:
    """A real redis-server for the session (tests that share state across replicas flush what they use)."""
    async with RedisServer() as server:
        yield server.url


def storage_config() -> StorageConfig:
    return StorageConfig(database_url=_APPS_DATABASE[0], pool_max_size=4)


def forge_config(fake: FakeUpstream, *, litellm: bool = False, discover_ollama: bool = True) -> ForgeConfig:
    """forge in front of the fake: `fake` (lean OpenAI adapter), `fake/*` wildcard, Ollama discovered at the
    fake, and with `litellm` a `lite/*` route through litellm's own client code."""
    deployments = [
        DeploymentConfig("fake", "openai/gpt-fake", api_base=fake.openai_base, api_key="sk-test"),
        DeploymentConfig("fake/*", "openai/*", api_base=fake.openai_base, api_key="sk-test"),
        DeploymentConfig("badkey/*", "openai/*", api_base=fake.openai_base, api_key="bad-key", env_var="FAKE_KEY"),
        DeploymentConfig("down/*", "openai/*", api_base="http://127.0.0.1:9/v1", api_key="x"),
    ]
    if litellm:
        deployments.append(
            DeploymentConfig("lite/*", "openai/*", api_base=fake.openai_base, api_key="sk-test", adapter="litellm")
        )
    return ForgeConfig(
        storage=storage_config(),
        providers=ProvidersConfig(
            deployments=tuple(deployments),
            ollama_host=fake.base_url,
            discover_ollama=discover_ollama,
            default_model="fake",
            local_model=False,  # the local model has its own tests (tests/local); here it would change listings
        ),
    )


@pytest_asyncio.fixture
async def forge(fake: FakeUpstream) -> AsyncIterator[ForgeApp]:
    await fake.reset()
    async with running_forge(forge_config(fake)) as app:
        yield app


@pytest_asyncio.fixture
async def channel(forge: ForgeApp) -> AsyncIterator[grpc.aio.Channel]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{forge.grpc_port}") as ch:
        yield ch


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"
