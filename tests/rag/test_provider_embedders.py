"""Provider embedders, selectable per namespace by the same routes chat uses: an OpenAI-compatible route
(`fake/*`), Ollama's native `/api/embed`, and litellm (`lite/*`) — each driven through its real client code
against the fake upstream, with the dimension recorded per namespace and a mismatch refused."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
import pytest
import pytest_asyncio
from forge.rag.v1 import rag_pb2, rag_pb2_grpc

from forge_rpc.server.app import ForgeApp
from forge_rpc.testing import running_forge
from tests.conftest import forge_config
from tests.fakes import FakeUpstream
from tests.rpc.test_usage_ledger import ledger_rows

pytestmark = pytest.mark.asyncio

DOCS = [
    ("harbour", "The harbour master logs every ship that enters the bay."),
    ("orchard", "Apple trees in the orchard blossom in late spring."),
]


@pytest_asyncio.fixture
async def app(fake: FakeUpstream) -> AsyncIterator[ForgeApp]:
    cfg = forge_config(fake, litellm=True)
    async with running_forge(cfg, http=False) as forge:
        yield forge


@pytest.mark.parametrize(
    ("embedder", "provider"),
    [
        ("fake/text-embedding-3-small", "fake"),
        ("ollama/llama3.2:1b", "ollama"),
        ("lite/text-embedding-3-small", "lite"),
    ],
)
async def test_a_namespace_indexes_and_queries_with_a_provider_embedder(
    app: ForgeApp, embedder: str, provider: str
) -> None:
    namespace = "prov-" + provider
    async with grpc.aio.insecure_channel(f"127.0.0.1:{app.grpc_port}") as channel:
        rag = rag_pb2_grpc.RagServiceStub(channel)
        created = await rag.CreateNamespace(
            rag_pb2.CreateNamespaceRequest(namespace=rag_pb2.Namespace(name=namespace, embedder=embedder))
        )
        assert created.embedder == embedder
        await rag.IndexDocuments(
            rag_pb2.IndexDocumentsRequest(
                namespace=namespace,
                documents=[rag_pb2.Document(document_id=i, content=c) for i, c in DOCS],
            ),
            metadata=(("x-request-id", f"prov-index-{provider}"),),
        )
        shown = await rag.GetNamespace(rag_pb2.GetNamespaceRequest(name=namespace))
        assert shown.dimension > 0  # learnt from the provider's first answer, then fixed
        # The fake's vectors are a hash of the text: the exact text finds its own document first.
        found = await rag.Query(rag_pb2.QueryRequest(namespace=namespace, query=DOCS[1][1], top_k=2))
        assert found.relevant_documents[0].document_id == "orchard"

        with pytest.raises(grpc.aio.AioRpcError) as err:
            await rag.Query(rag_pb2.QueryRequest(namespace=namespace, query="ships", embedder="local/all-MiniLM-L6-v2"))
        assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION

    (row,) = await ledger_rows(app, f"prov-index-{provider}")
    assert row["model"] == embedder
    assert row["provider"] == provider
    assert row["prompt_tokens"] > 0
    assert row["status"] == "completed"


async def test_create_embeddings_through_a_provider_and_its_errors(app: ForgeApp) -> None:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{app.grpc_port}") as channel:
        rag = rag_pb2_grpc.RagServiceStub(channel)
        reply = await rag.CreateEmbeddings(
            rag_pb2.CreateEmbeddingsRequest(input=["one", "two"], model="fake/text-embedding-3-small")
        )
        assert reply.model == "fake/text-embedding-3-small"
        assert len(reply.data) == 2
        assert reply.dimension == len(reply.data[0].embedding) > 0
        assert reply.usage.prompt_tokens > 0

        with pytest.raises(grpc.aio.AioRpcError) as err:
            await rag.CreateEmbeddings(rag_pb2.CreateEmbeddingsRequest(input=["x"], model="nowhere/model"))
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "unknown embedder" in (err.value.details() or "")

        with pytest.raises(grpc.aio.AioRpcError) as err:
            await rag.CreateEmbeddings(rag_pb2.CreateEmbeddingsRequest(input=["x"], model="badkey/text-embed"))
        # The provider refusing forge's key is the operator's problem, not the caller's: not a 401 to them.
        assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert "FAKE_KEY" in (err.value.details() or "")

        with pytest.raises(grpc.aio.AioRpcError) as err:
            await rag.CreateEmbeddings(
                rag_pb2.CreateEmbeddingsRequest(input=["x"], model="fake/text-embedding-3-small@fail=503")
            )
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE
