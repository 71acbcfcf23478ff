"""`running_forge`: the production builder on port 0, for tests (forge's own and its users')."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from ..server.app import ForgeApp, build
from ..server.config import ForgeConfig

__all__ = ["running_forge"]


@asynccontextmanager
async def running_forge(config: ForgeConfig, grace: float = 0.5) -> AsyncIterator[ForgeApp]:
    """Starts forge's gRPC server on 127.0.0.1 and a free port; `app.grpc_port` says which."""
    config = dataclasses.replace(config, grpc=dataclasses.replace(config.grpc, host="127.0.0.1", port=0))
    app = build(config)
    await app.start()
    try:
        yield app
    finally:
        await app.stop(grace)
