"""The composition root: builds providers, engine, servicers and the wrapped method table from a ForgeConfig,
and runs the gRPC server with health, reflection and graceful shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import signal
import time
from dataclasses import dataclass, field
from typing import Any

import grpc
from aiohttp import web
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from psycopg_pool import AsyncConnectionPool
from redis.asyncio import Redis

from gateway.app import build_edge, start_edge
from gateway.invoke import ChannelInvoker, Invoker, LocalInvoker
from gateway.keys import EdgeConfig

from ..adapters.accounting import PriceTable
from ..adapters.embedders import EmbedderDirectory, MiniLMEmbedder
from ..adapters.host_stats import HostProbe
from ..adapters.providers.directory import ProviderDirectory
from ..adapters.providers.health_monitor import HealthMonitor
from ..adapters.providers.local_llama import LocalLlamaProvider
from ..adapters.store import create_pool, migrate
from ..adapters.store.analytics_queries import AnalyticsQueries
from ..adapters.store.job_counts import JobCounts
from ..adapters.store.ledger import UsageLedger
from ..adapters.store.rag_store import RagStore
from ..services.analytics import AnalyticsConfig, AnalyticsServicer
from ..services.chat import ChatServicer
from ..services.inflight import InFlight
from ..services.rag import RagServicer
from ..services.system_health import SystemHealthServicer
from ..services.system_stats import SystemStatsServicer
from .component import Component, Core, Resources
from .compose_auth import auth_component
from .compose_embedders import build_embedders
from .compose_engine import build_engine
from .compose_limits import limits_component, response_cache
from .compose_models import models_component
from .compose_resilience import breaker_board, resilience_component
from .compose_retrain import retrain_component
from .compose_routing import routing_component
from .compose_training import training_component
from .config import ForgeConfig
from .database import EmbeddedPostgres
from .methods import MethodTable, build_method_table, grpc_handlers
from .services import PLANNED_IN, SERVICES

__all__ = ["ForgeApp", "build"]

log = logging.getLogger("forge")


# Keepalive that tolerates long prefills: clients may ping every 10 s with no data in flight (a 70B prefill can
# keep a stream silent for a minute), and the server checks idle peers every 60 s.
def _server_options(cfg: ForgeConfig) -> list[tuple[str, int]]:
    return [
        ("grpc.max_receive_message_length", cfg.grpc.max_message_bytes),
        ("grpc.max_send_message_length", cfg.grpc.max_message_bytes),
        ("grpc.keepalive_time_ms", 60_000),
        ("grpc.keepalive_timeout_ms", 20_000),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.min_recv_ping_interval_without_data_ms", 10_000),
        ("grpc.http2.max_pings_without_data", 0),
        ("grpc.so_reuseport", 0),
    ]


@dataclass
class ForgeApp:
    config: ForgeConfig
    directory: ProviderDirectory
    methods: MethodTable
    health: health.aio.HealthServicer
    server: grpc.aio.Server | None = None
    grpc_port: int = 0
    http_port: int = 0
    edge: web.AppRunner | None = None
    started_at: float = field(default_factory=time.time)
    pool: AsyncConnectionPool[Any] | None = None
    rag_store: RagStore | None = None
    local_embedder: MiniLMEmbedder | None = None
    embedders: EmbedderDirectory | None = None
    monitor: HealthMonitor | None = None
    embedded_db: EmbeddedPostgres | None = None
    ledger: UsageLedger | None = None
    analytics_queries: AnalyticsQueries | None = None
    components: list[Component] = field(default_factory=list)
    system_stats: SystemStatsServicer | None = None
    job_counts: JobCounts | None = None
    redis: Redis | None = None

    async def start(self, edge_config: EdgeConfig | None = None) -> None:
        # Storage first: nothing serves before the schema exists.
        await self.start_storage()
        try:
            await self.start_core()
            if self.config.http.enabled:
                await self.start_edge(LocalInvoker(self.methods), edge_config)
        except BaseException:
            await self.stop(0)
            raise

    async def start_storage(self) -> None:
        """The embedded PostgreSQL (unless FORGE_DATABASE_URL names one), migrated, and a connection pool."""
        s = self.config.storage
        url = s.database_url
        if url is None:
            self.embedded_db = EmbeddedPostgres(self.config.data_dir, port=s.embedded_port)
            url = await self.embedded_db.start()
        await migrate(url)
        self.pool = create_pool(url, min_size=s.pool_min_size, max_size=s.pool_max_size, timeout_s=s.pool_timeout_s)
        await self.pool.open(wait=True, timeout=30)
        # Servicers were built before the pool existed: bind it now, before anything serves.
        if self.analytics_queries is not None:
            self.analytics_queries.bind(self.pool)
        if self.rag_store is not None:
            self.rag_store.bind(self.pool)
        if self.system_stats is not None:
            self.system_stats.bind(self.pool)
        if self.job_counts is not None:
            self.job_counts.bind(self.pool)
        if self.monitor is not None:
            self.monitor.attach_database(self.pool)
        if self.ledger is not None:
            await self.ledger.start(self.pool)
        if s.redis_url:
            self.redis = Redis.from_url(s.redis_url)
            await self.redis.ping()
        resources = Resources(self.pool, self.redis)
        for component in self.components:
            if component.start is not None:
                await component.start(resources)

    async def stop_storage(self) -> None:
        for component in reversed(self.components):
            if component.stop is not None:
                try:
                    await component.stop()
                except Exception:
                    log.exception("stopping %s failed", component.name)
        if self.monitor is not None:
            self.monitor.attach_database(None)
        # The ledger first: its close() writes every recorded row, which needs the pool still open. It runs
        # after the servers stopped, so the last calls' rows are in the buffer by then.
        if self.ledger is not None:
            await self.ledger.close()
        if self.pool is not None:
            await self.pool.close()
            self.pool = None
        if self.redis is not None:
            await self.redis.aclose()
            self.redis = None
        if self.embedded_db is not None:
            await self.embedded_db.stop()
            self.embedded_db = None

    async def start_edge(self, invoker: Invoker, edge_config: EdgeConfig | None = None) -> None:
        """The HTTP edge in this process and event loop, over the given invoker."""
        cfg = edge_config or edge_settings(self.config, self.started_at)
        edge = build_edge(invoker, cfg)
        # aiohttp waits up to the grace period for handlers at shutdown, then cancels them (and their core calls).
        self.edge, self.http_port = await start_edge(
            edge, self.config.http.host, self.config.http.port, self.config.grpc.shutdown_grace_s
        )
        log.info("HTTP listening on %s:%d", self.config.http.host, self.http_port)

    async def start_core(self) -> None:
        if self.directory.local is not None:
            self.directory.local.warm_up()  # loads on its own thread (~0.3 s): serving starts without waiting
        self.server = grpc.aio.server(options=_server_options(self.config))
        self.server.add_generic_rpc_handlers(grpc_handlers(self.methods))
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        names = [
            *SERVICES,
            health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
            reflection.SERVICE_NAME,
        ]
        reflection.enable_server_reflection(names, self.server)
        address = f"{self.config.grpc.host}:{self.config.grpc.port}"
        self.grpc_port = self.server.add_insecure_port(address)
        if self.grpc_port == 0:
            raise OSError(f"cannot listen for gRPC on {address}")
        await self.server.start()
        await self.directory.refresh(force=True)
        await self._set_serving()
        log.info("gRPC listening on %s:%d", self.config.grpc.host, self.grpc_port)

    async def _set_serving(self) -> None:
        S = health_pb2.HealthCheckResponse
        for name in SERVICES:
            implemented = any(m.implemented for m in self.methods.values() if m.full_name.startswith(f"/{name}/"))
            await self.health.set(name, S.SERVING if implemented and name in _READY else S.NOT_SERVING)
        await self.health.set("", S.SERVING)

    async def stop(self, grace: float | None = None) -> None:
        """Health goes NOT_SERVING first (so balancers drain), in-flight calls get `grace` seconds, then the
        rest are cancelled."""
        await self.health.enter_graceful_shutdown()
        grace = self.config.grpc.shutdown_grace_s if grace is None else grace
        try:
            await asyncio.gather(
                *([self.server.stop(grace)] if self.server is not None else []),
                *([self.edge.cleanup()] if self.edge is not None else []),
            )
            await self.directory.close()
            if self.embedders is not None:
                await self.embedders.close()
        finally:
            await self.stop_storage()

    async def wait(self) -> None:
        if self.server is not None:
            await self.server.wait_for_termination()


# Services whose dependencies are all in process today; the others report NOT_SERVING until they land.
_READY = {
    "forge.analytics.v1.AnalyticsService",
    "forge.auth.v1.AuthService",
    "forge.rag.v1.RagService",
    "forge.chat.v1.ChatService",
    "forge.models.v1.ModelsService",
    "forge.routing.v1.RoutingService",
    "forge.training.v1.TrainingService",
}


def build(config: ForgeConfig, *, local: LocalLlamaProvider | None = None) -> ForgeApp:
    """`local` serves an in-process model built by the caller (tests); by default the `local` extra's, if
    installed and not turned off."""
    prices = PriceTable(dict(config.usage.prices))
    directory, engine = build_engine(config, prices, local)
    started_at = time.time()
    # The pool is bound in start_storage().
    ledger = UsageLedger(flush_interval_s=config.storage.ledger_flush_interval_s)
    queries = AnalyticsQueries()
    job_counts = JobCounts()  # tasks and jobs in the metrics snapshot
    monitor = HealthMonitor(directory)
    core = Core(config, directory, engine, prices, ledger, monitor, started_at)
    # The offline embedder loads on first use (about a second); `forge serve` warms it in the background.
    local_embedder = MiniLMEmbedder()
    rag_store = RagStore()  # the pool is bound in start_storage()
    embedders = build_embedders(config, local_embedder)
    cache = response_cache(config)  # shared by the chat servicer and the cache RPCs
    inflight = InFlight()
    host = HostProbe(config.data_dir)
    system_stats = SystemStatsServicer(host, config.version, started_at, bool(config.storage.redis_url))
    quotas = AnalyticsConfig(default_token_quota=config.usage.token_quota, token_quotas=config.usage.token_quotas)
    analytics = AnalyticsServicer(
        ledger, queries, prices, started_at, quotas, inflight=inflight, services=monitor, host=host, queue=job_counts
    )
    servicers: dict[str, list[object]] = {
        "forge.chat.v1.ChatService": [ChatServicer(engine, ledger, log_content=config.usage.log_content, cache=cache)],
        "forge.analytics.v1.AnalyticsService": [analytics, system_stats],
        "forge.rag.v1.RagService": [RagServicer(rag_store, embedders, engine, ledger=ledger, prices=prices)],
        "forge.routing.v1.RoutingService": [
            SystemHealthServicer(monitor, config.version, started_at, config.status_watch_interval_s)
        ],
    }
    # Order matters for policies: routing rules pick a chat's model first (auth checks a key's allowed models
    # and limits count per model), and authentication runs before limits (which key on the caller).
    components = [
        routing_component(core, breakers=breaker_board(core)),
        auth_component(core),
        limits_component(core, cache),
        models_component(core),
        resilience_component(core),
        training_component(core),
        retrain_component(core),
    ]
    for component in components:
        for name, parts in component.servicers.items():
            servicers.setdefault(name, []).extend(parts)
    policies = [p for c in components for p in c.policies]
    table = build_method_table(
        {d: servicers.get(name, []) for name, d in SERVICES.items()}, PLANNED_IN, policies, inflight
    )
    hs = health.aio.HealthServicer()
    return ForgeApp(
        config,
        directory,
        table,
        hs,
        started_at=started_at,
        ledger=ledger,
        analytics_queries=queries,
        rag_store=rag_store,
        local_embedder=local_embedder,
        embedders=embedders,
        monitor=monitor,
        components=components,
        system_stats=system_stats,
        job_counts=job_counts,
    )


def edge_settings(config: ForgeConfig, started_at: float | None = None) -> EdgeConfig:
    """What the edge needs from the config: it cannot read ForgeConfig (it may run apart from the core)."""
    cfg = EdgeConfig(version=config.version, auth_required=config.auth.enabled, cors_origins=config.auth.cors_origins)
    return cfg if started_at is None else dataclasses.replace(cfg, started_at=started_at)


def _stop_event() -> asyncio.Event:
    """Set on SIGTERM/SIGINT; installed before anything listens, so an early signal is never fatal."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    return stop


async def run_until_signal(app: ForgeApp) -> None:
    stop = _stop_event()
    await app.start()
    # Off the loop (a worker thread): the first RAG call then does not pay the model load.
    warm = asyncio.create_task(app.local_embedder.load()) if app.local_embedder is not None else None
    await stop.wait()
    if warm is not None and not warm.done():
        warm.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await warm
    log.info("shutting down: draining for up to %.0fs", app.config.grpc.shutdown_grace_s)
    await app.stop()


async def run_edge_only(config: ForgeConfig, core_address: str) -> None:
    """The edge deployed apart from the core: the same routes over a gRPC channel to `core_address`."""
    stop = _stop_event()
    invoker = ChannelInvoker(core_address)
    edge = build_edge(invoker, edge_settings(config))
    runner, port = await start_edge(edge, config.http.host, config.http.port, config.grpc.shutdown_grace_s)
    log.info("HTTP edge listening on %s:%d, core at %s", config.http.host, port, core_address)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()
        await invoker.close()
