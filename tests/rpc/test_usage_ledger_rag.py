"""Embeddings and RAG generations write exactly one usage row each, like chat: completed or failed, with the
operation, the model that served, its provider and its tokens."""

from __future__ import annotations

import grpc
import pytest
from forge.rag.v1 import rag_pb2, rag_pb2_grpc

from forge_rpc.server.app import ForgeApp
from tests.fakes import fake_model
from tests.rpc.test_usage_ledger import ledger_rows

pytestmark = pytest.mark.asyncio


async def operation_of(app: ForgeApp, request_id: str) -> str:
    assert app.pool is not None
    async with app.pool.connection() as conn:
        cur = await conn.execute("SELECT operation FROM usage_ledger WHERE request_id = %s", (request_id,))
        row = await cur.fetchone()
    assert row is not None
    return str(row[0])


async def test_embeddings_write_one_embedding_row(forge: ForgeApp, channel: grpc.aio.Channel) -> None:
    stub = rag_pb2_grpc.RagServiceStub(channel)
    reply = await stub.CreateEmbeddings(
        rag_pb2.CreateEmbeddingsRequest(input=["hello world", "a second text"]),
        metadata=(("x-request-id", "ledger-embed"),),
    )
    (row,) = await ledger_rows(forge, "ledger-embed")
    assert await operation_of(forge, "ledger-embed") == "embedding"
    assert row["status"] == "completed"
    assert row["model"] == reply.model
    assert row["provider"] == "local"
    assert row["prompt_tokens"] == reply.usage.prompt_tokens > 0


async def test_indexing_and_querying_write_one_row_each(forge: ForgeApp, channel: grpc.aio.Channel) -> None:
    stub = rag_pb2_grpc.RagServiceStub(channel)
    ns = "ledger-rag"
    indexed = await stub.IndexDocuments(
        rag_pb2.IndexDocumentsRequest(
            namespace=ns,
            documents=[rag_pb2.Document(document_id="d1", content="The lighthouse keeper rows to the island.")],
        ),
        metadata=(("x-request-id", "ledger-index"),),
    )
    (row,) = await ledger_rows(forge, "ledger-index")
    assert await operation_of(forge, "ledger-index") == "embedding"
    assert row["prompt_tokens"] == indexed.usage.prompt_tokens > 0

    answer = await stub.Query(
        rag_pb2.QueryRequest(
            namespace=ns,
            query="who rows to the island?",
            generate_response=True,
            model=fake_model("fake/gpt-fake", tokens=7),
        ),
        metadata=(("x-request-id", "ledger-rag-answer"),),
    )
    (row,) = await ledger_rows(forge, "ledger-rag-answer")
    assert await operation_of(forge, "ledger-rag-answer") == "rag"
    assert row["status"] == "completed"
    assert row["provider"] == "openai"
    assert row["completion_tokens"] == answer.usage.completion_tokens == 7
    assert row["prompt_tokens"] == answer.usage.prompt_tokens > 0

    await stub.Query(rag_pb2.QueryRequest(namespace=ns, query="island"), metadata=(("x-request-id", "ledger-rq"),))
    (row,) = await ledger_rows(forge, "ledger-rq")
    assert (row["status"], row["completion_tokens"]) == ("completed", 0)


async def test_a_failed_rag_generation_writes_a_failed_row(forge: ForgeApp, channel: grpc.aio.Channel) -> None:
    stub = rag_pb2_grpc.RagServiceStub(channel)
    await stub.IndexDocuments(
        rag_pb2.IndexDocumentsRequest(
            namespace="ledger-rag-fail", documents=[rag_pb2.Document(document_id="d", content="Some text.")]
        )
    )
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.Query(
            rag_pb2.QueryRequest(
                namespace="ledger-rag-fail",
                query="text",
                generate_response=True,
                model=fake_model("fake/gpt-fake", fail=503),
            ),
            metadata=(("x-request-id", "ledger-rag-503"),),
        )
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE
    (row,) = await ledger_rows(forge, "ledger-rag-503")
    assert row["status"] == "failed"
    assert row["error_reason"]
