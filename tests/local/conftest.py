"""A real forge with the local model wired in, shared by the module's tests (loading it once costs ~1 s).

The production builder with the provider handed in (`build(config, local=…)`): routing, listing, accounting, the
servicers and the edge are all the production ones.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
import pytest
import pytest_asyncio

from forge_rpc.adapters.providers.local_llama import LocalLlamaProvider, local_provider_if_available
from forge_rpc.adapters.providers.local_llama import missing_local_model as _missing
from forge_rpc.server.app import ForgeApp, build
from forge_rpc.server.config import ForgeConfig, GrpcConfig, HttpConfig, ProvidersConfig
from tests.conftest import storage_config

MISSING = _missing()
#: Marks a module that generates with the real model; CI installs the `local` extra, a bare checkout skips.
needs_local_model = pytest.mark.skipif(MISSING is not None, reason=MISSING or "")


def local_forge_config() -> ForgeConfig:
    """Nothing but the local model (the provider is handed to `build()`), on free ports, the session database."""
    return ForgeConfig(
        storage=storage_config(),
        grpc=GrpcConfig(host="127.0.0.1", port=0, shutdown_grace_s=0.5),
        http=HttpConfig(host="127.0.0.1", port=0),
        providers=ProvidersConfig(discover_ollama=False, local_model=False),
    )


@pytest_asyncio.fixture(scope="session")
async def local_provider() -> AsyncIterator[LocalLlamaProvider]:
    provider = local_provider_if_available()
    if provider is None:
        pytest.skip(MISSING or "the local model is not installed")
    provider.warm_up()
    yield provider
    await provider.close()


@pytest_asyncio.fixture(scope="session")
async def local_forge(local_provider: LocalLlamaProvider) -> AsyncIterator[ForgeApp]:
    app = build(local_forge_config(), local=local_provider)
    await app.start()
    try:
        yield app
    finally:
        await app.stop(0.5)  # closes the directory's providers, the local one with them


@pytest_asyncio.fixture(scope="session")
async def local_channel(local_forge: ForgeApp) -> AsyncIterator[grpc.aio.Channel]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{local_forge.grpc_port}") as ch:
        yield ch
