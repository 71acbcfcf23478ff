"""A forge whose chat servicer answers from the response cache, composed from the production parts the way
`app.build()` will once it hands `ChatServicer` the cache (see compose_limits): the real engine in front of the
fake, the real ledger on the tests' PostgreSQL, the limits component (policy, cache RPCs, memory or Redis
backend), the wrapped method table served over gRPC and through the edge's in-process invoker."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf.descriptor import ServiceDescriptor
from psycopg_pool import AsyncConnectionPool
from redis.asyncio import Redis

from forge_rpc.adapters.accounting import PriceTable
from forge_rpc.adapters.providers.health_monitor import HealthMonitor
from forge_rpc.adapters.store import create_pool, migrate
from forge_rpc.adapters.store.ledger import UsageLedger
from forge_rpc.domain.response_cache import ResponseCache
from forge_rpc.server.component import Core, Resources
from forge_rpc.server.compose_engine import build_engine
from forge_rpc.server.compose_limits import limits_component, response_cache
from forge_rpc.server.config import ForgeConfig
from forge_rpc.server.methods import build_method_table, grpc_handlers
from forge_rpc.server.services import PLANNED_IN, SERVICES
from forge_rpc.services.chat import ChatServicer
from gateway.app import build_edge, start_edge
from gateway.invoke import LocalInvoker

CHAT = "forge.chat.v1.ChatService"
ANALYTICS = "forge.analytics.v1.AnalyticsService"


@dataclass
class CacheForge:
    grpc_port: int
    http_port: int
    cache: ResponseCache
    ledger: UsageLedger
    pool: AsyncConnectionPool[Any]

    async def ledger_rows(self, request_id: str) -> list[dict[str, Any]]:
        await self.ledger.flush()
        async with self.pool.connection() as conn, conn.cursor() as cur:
            await cur.execute(
                "SELECT status, model, provider, prompt_tokens, completion_tokens, cost_usd"
                " FROM usage_ledger WHERE request_id = %s",
                (request_id,),
            )
            names = [d.name for d in cur.description or ()]
            return [dict(zip(names, row, strict=True)) for row in await cur.fetchall()]


@asynccontextmanager
async def cache_forge(config: ForgeConfig) -> AsyncIterator[CacheForge]:
    url = config.storage.database_url
    assert url is not None
    prices = PriceTable(dict(config.usage.prices))
    directory, engine = build_engine(config, prices, None)
    await directory.refresh(force=True)
    await migrate(url)
    pool = create_pool(url, min_size=1, max_size=2, timeout_s=5.0)
    await pool.open(wait=True)
    ledger = UsageLedger()
    await ledger.start(pool)
    redis = Redis.from_url(config.storage.redis_url) if config.storage.redis_url else None
    cache = response_cache(config)
    core = Core(config, directory, engine, prices, ledger, HealthMonitor(directory), time.time())
    limits = limits_component(core, cache)
    assert limits.start is not None
    await limits.start(Resources(pool, redis))
    services: dict[ServiceDescriptor, list[object]] = {
        SERVICES[CHAT]: [ChatServicer(engine, ledger, cache=cache)],
        SERVICES[ANALYTICS]: list(limits.servicers[ANALYTICS]),
    }
    table = build_method_table(services, PLANNED_IN, limits.policies)
    server = grpc.aio.server()
    server.add_generic_rpc_handlers(grpc_handlers(table))
    grpc_port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    runner, http_port = await start_edge(build_edge(LocalInvoker(table)), "127.0.0.1", 0, shutdown_timeout=0.5)
    try:
        yield CacheForge(grpc_port, http_port, cache, ledger, pool)
    finally:
        await runner.cleanup()
        await server.stop(0.5)
        await directory.close()
        await ledger.close()
        await pool.close()
        if redis is not None:
            await redis.aclose()
