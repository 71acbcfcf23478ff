"""Durable state across real `forge serve` processes: a shutdown in the middle of a ledger batch loses nothing,
a crash loses nothing that was acknowledged, a retried request id counts once, and two replicas share one
database (migrating it together at start)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import psycopg
import pytest
import pytest_asyncio
import yaml
from forge.analytics.v1 import analytics_pb2, analytics_pb2_grpc
from forge.chat.v1 import chat_pb2, chat_pb2_grpc
from forge.rag.v1 import rag_pb2, rag_pb2_grpc
from psycopg.conninfo import make_conninfo

from tests.conftest import storage_config
from tests.e2e.forge_process import ForgeProcess
from tests.fakes import FakeUpstream

pytestmark = pytest.mark.asyncio


@pytest_asyncio.fixture
async def fresh_database() -> AsyncIterator[str]:
    """A new, empty database on the session's PostgreSQL: forge migrates it from nothing."""
    server = storage_config().database_url
    assert server is not None
    name = f"durability_{uuid.uuid4().hex[:10]}"
    async with await psycopg.AsyncConnection.connect(server, autocommit=True) as conn:
        await conn.execute(f'CREATE DATABASE "{name}"')
    yield make_conninfo(server, dbname=name)


def config_file(tmp: Path, fake: FakeUpstream) -> Path:
    path = tmp / "forge.yaml"
    deployment = {"model": "openai/gpt-fake", "api_base": fake.openai_base, "api_key": "sk-test"}
    config = {
        "model_list": [{"model_name": "fake", "litellm_params": deployment}],
        "providers": {"default_model": "fake", "discover_ollama": False},
    }
    path.write_text(yaml.safe_dump(config))
    return path


def forge_env(database: str, tmp: Path, **extra: str) -> dict[str, str]:
    return {"FORGE_DATABASE_URL": database, "FORGE_DATA_DIR": str(tmp / "data"), "FORGE_DISCOVER_OLLAMA": "0", **extra}


async def rows_for(database: str, request_ids: list[str]) -> dict[str, int]:
    async with await psycopg.AsyncConnection.connect(database) as conn:
        cur = await conn.execute(
            "SELECT request_id, count(*) FROM usage_ledger WHERE request_id = ANY(%s) GROUP BY request_id",
            (request_ids,),
        )
        return {str(r[0]): int(r[1]) for r in await cur.fetchall()}


async def chat_once(address: str, request_id: str) -> None:
    async with grpc.aio.insecure_channel(address) as channel:
        stub = chat_pb2_grpc.ChatServiceStub(channel)
        reply = await stub.CreateChatCompletion(
            chat_pb2.CreateChatCompletionRequest(
                chat=chat_pb2.ChatRequest(model="fake", messages=[chat_pb2.Message(role="user", content="hi")])
            ),
            metadata=(("x-request-id", request_id),),
        )
        assert reply.choices[0].message.content


async def test_shutdown_in_the_middle_of_a_batch_loses_nothing(
    fake: FakeUpstream, fresh_database: str, tmp_path: Path
) -> None:
    # An hour between flushes: every row below is still in the batch when the signal comes.
    env = forge_env(fresh_database, tmp_path, FORGE_LEDGER_FLUSH_INTERVAL_S="3600")
    forge = ForgeProcess(env, config=config_file(tmp_path, fake))
    await forge.start()
    ids = [f"mid-batch-{i}" for i in range(20)]
    await asyncio.gather(*(chat_once(forge.address, rid) for rid in ids))
    assert await rows_for(fresh_database, ids) == {}  # acknowledged to the clients, not yet written

    assert await forge.stop() == 0
    assert await rows_for(fresh_database, ids) == dict.fromkeys(ids, 1)

    # Restarted, the same clients retry some of those requests: each request id still counts once.
    await forge.start()
    await asyncio.gather(*(chat_once(forge.address, rid) for rid in ids[:5]))
    await chat_once(forge.address, "after-restart")
    assert await forge.stop() == 0
    assert await rows_for(fresh_database, [*ids, "after-restart"]) == dict.fromkeys([*ids, "after-restart"], 1)


async def test_a_crash_loses_no_acknowledged_usage_record(
    fake: FakeUpstream, fresh_database: str, tmp_path: Path
) -> None:
    forge = ForgeProcess(forge_env(fresh_database, tmp_path), config=config_file(tmp_path, fake))
    await forge.start()
    async with grpc.aio.insecure_channel(forge.address) as channel:
        stub = analytics_pb2_grpc.AnalyticsServiceStub(channel)
        reply = await stub.RecordUsage(
            analytics_pb2.RecordUsageRequest(model="external-model", tokens_used=42, request_id="crash-ack")
        )
    assert reply.recorded
    await forge.kill()  # kill -9: no shutdown code runs
    assert await rows_for(fresh_database, ["crash-ack"]) == {"crash-ack": 1}


async def test_two_replicas_share_one_database(fake: FakeUpstream, fresh_database: str, tmp_path: Path) -> None:
    cfg = config_file(tmp_path, fake)
    a = ForgeProcess(forge_env(fresh_database, tmp_path / "a"), config=cfg)
    b = ForgeProcess(forge_env(fresh_database, tmp_path / "b"), config=cfg)
    # Both start at once on an empty database: the migrations run exactly once, under the advisory lock.
    await asyncio.gather(a.start(), b.start())
    try:
        async with grpc.aio.insecure_channel(a.address) as ca, grpc.aio.insecure_channel(b.address) as cb:
            rag_a, rag_b = rag_pb2_grpc.RagServiceStub(ca), rag_pb2_grpc.RagServiceStub(cb)
            await rag_a.IndexDocuments(
                rag_pb2.IndexDocumentsRequest(
                    namespace="shared",
                    documents=[rag_pb2.Document(document_id="tides", content="Tides follow the moon's pull.")],
                )
            )
            found = await rag_b.Query(rag_pb2.QueryRequest(namespace="shared", query="what moves the tides?"))
            assert [d.document_id for d in found.relevant_documents] == ["tides"]

            # The same request id reaching both replicas (a retry through the balancer) is one row.
            usage_a = analytics_pb2_grpc.AnalyticsServiceStub(ca)
            usage_b = analytics_pb2_grpc.AnalyticsServiceStub(cb)
            for stub in (usage_a, usage_b):
                await stub.RecordUsage(
                    analytics_pb2.RecordUsageRequest(model="external", tokens_used=5, request_id="both-replicas")
                )
        await asyncio.gather(chat_once(a.address, "from-a"), chat_once(b.address, "from-b"))
    finally:
        await asyncio.gather(a.stop(), b.stop())
    assert await rows_for(fresh_database, ["both-replicas", "from-a", "from-b"]) == {
        "both-replicas": 1,
        "from-a": 1,
        "from-b": 1,
    }
    async with await psycopg.AsyncConnection.connect(fresh_database) as conn:
        cur = await conn.execute("SELECT count(*) FROM schema_migrations")
        row = await cur.fetchone()
    assert row is not None
    migrations = Path(__file__).parents[2] / "forge_rpc" / "adapters" / "store" / "migrations"
    assert row[0] == len(list(migrations.glob("*.sql")))
