"""`running_forge`: the production builder on free ports, for tests (forge's own and its users')."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from gateway.invoke import ChannelInvoker
from gateway.keys import EdgeConfig

from ..server.app import ForgeApp, build
from ..server.config import ForgeConfig

__all__ = ["running_forge"]


@asynccontextmanager
async def running_forge(
    config: ForgeConfig,
    grace: float = 0.5,
    *,
    http: bool = True,
    split: bool = False,
    edge_config: EdgeConfig | None = None,
) -> AsyncIterator[ForgeApp]:
    """Starts forge on 127.0.0.1 and free ports: `app.grpc_port`, and with `http` the edge's `app.http_port`.
    With `split`, the edge reaches the core over a gRPC channel (as when deployed apart) instead of in process."""
    config = dataclasses.replace(
        config,
        grpc=dataclasses.replace(config.grpc, host="127.0.0.1", port=0, shutdown_grace_s=grace),
        http=dataclasses.replace(config.http, host="127.0.0.1", port=0, enabled=http and not split),
    )
    app = build(config)
    await app.start(edge_config)
    channel_invoker = None
    if http and split:
        channel_invoker = ChannelInvoker(f"127.0.0.1:{app.grpc_port}")
        await app.start_edge(channel_invoker, edge_config)
    try:
        yield app
    finally:
        await app.stop(grace)
        if channel_invoker is not None:
            await channel_invoker.close()
