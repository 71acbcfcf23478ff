"""RagService end to end below the wire: real PostgreSQL + pgvector, the real ONNX MiniLM, the servicer."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import numpy as np
import pytest
from forge.rag.v1 import rag_pb2 as pb
from google.protobuf import json_format
from google.protobuf.struct_pb2 import Struct, Value

from forge_rpc.adapters.embedders import MiniLMEmbedder
from forge_rpc.adapters.store.rag_store import (
    ChunkWrite,
    Condition,
    DocumentWrite,
    NamespaceRow,
    RagStore,
    vector_search_sql,
)
from forge_rpc.domain import ErrorCode, ForgeError
from forge_rpc.services.rag import RagServicer

from .conftest import FakeContext, Pool
from .corpus import DOCUMENTS, QUESTIONS

CTX = FakeContext()


def _doc(d: dict[str, object]) -> pb.Document:
    return json_format.ParseDict(d, pb.Document())


async def _index(rag: RagServicer, namespace: str, docs: list[dict[str, object]]) -> pb.IndexDocumentsResponse:
    return await rag.IndexDocuments(
        pb.IndexDocumentsRequest(namespace=namespace, documents=[_doc(d) for d in docs]), CTX
    )


async def _query(rag: RagServicer, namespace: str, text: str, **fields: object) -> pb.QueryResponse:
    return await rag.Query(pb.QueryRequest(namespace=namespace, query=text, **fields), CTX)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
async def corpus(rag: RagServicer) -> str:
    response = await _index(rag, "corpus", DOCUMENTS)
    assert response.indexed and response.document_count == len(DOCUMENTS)
    assert response.usage.prompt_tokens > 0
    return "corpus"


@pytest.mark.parametrize("mode", [pb.SEARCH_MODE_VECTOR, pb.SEARCH_MODE_HYBRID])
async def test_paraphrased_questions_rank_the_right_document_first(
    rag: RagServicer, corpus: str, mode: pb.SearchMode
) -> None:
    wrong = []
    for question, expected in QUESTIONS:
        response = await _query(rag, corpus, question, top_k=3, mode=mode)
        if response.relevant_documents[0].document_id != expected:
            wrong.append((question, expected, [m.document_id for m in response.relevant_documents]))
    assert wrong == []


async def test_scores_metadata_and_latency(rag: RagServicer, corpus: str) -> None:
    response = await _query(rag, corpus, "How do leaves convert sunshine into sugar?", top_k=5)
    scores = [m.score for m in response.relevant_documents]
    assert len(scores) == 5 and scores == sorted(scores, reverse=True) and -1 <= scores[-1] <= scores[0] <= 1
    top = response.relevant_documents[0]
    assert top.id == top.document_id == "photosynthesis" and top.HasField("vector_score")
    assert top.metadata["title"] == "How plants make food" and list(top.metadata["tags"])  # type: ignore[arg-type]  # a ListValue here == ["biology", "plants"]
    assert response.mode == pb.SEARCH_MODE_VECTOR and response.namespace == corpus and response.took_ms > 0
    bare = await _query(rag, corpus, "volcano", include_metadata=False)
    assert not bare.relevant_documents[0].HasField("metadata")
    timings = []
    for _ in range(20):
        started = time.perf_counter()
        await _query(rag, corpus, "Why does naturally fermented bread taste sour?")
        timings.append((time.perf_counter() - started) * 1000)
    print(f"\nquery latency (embed + HNSW search, 8 docs): p50 {np.percentile(timings, 50):.1f} ms")


async def test_keyword_and_hybrid_scores(rag: RagServicer, corpus: str) -> None:
    keyword = await _query(rag, corpus, "three-way handshake retransmitted", mode=pb.SEARCH_MODE_KEYWORD)
    assert keyword.relevant_documents[0].document_id == "tcp"
    assert keyword.relevant_documents[0].HasField("text_score")
    assert not keyword.relevant_documents[0].HasField("vector_score")
    hybrid = await _query(rag, corpus, "espresso crema pressure", mode=pb.SEARCH_MODE_HYBRID)
    best = hybrid.relevant_documents[0]
    assert best.document_id == "coffee" and best.HasField("vector_score") and best.HasField("text_score")
    assert best.score == pytest.approx(2 / 61)  # first in both rankings: 1/(60+1) twice


async def test_metadata_filters(rag: RagServicer, corpus: str) -> None:
    def ids(response: pb.QueryResponse) -> set[str]:
        return {m.document_id for m in response.relevant_documents}

    q = "an interesting article"
    shorthand = Struct()
    shorthand.update({"author": "ada"})
    assert ids(await _query(rag, corpus, q, top_k=10, filter=shorthand)) == {"photosynthesis", "sourdough"}
    any_of = Struct()
    any_of.update({"author": ["mary", "linus"]})
    assert ids(await _query(rag, corpus, q, top_k=10, filter=any_of)) == {
        "roman-empire",
        "black-holes",
        "tcp",
        "coffee",
    }

    def cond(key: str, op: int, value: object = None) -> pb.MetadataFilter:
        f = pb.MetadataFilter(key=key, op=op)  # type: ignore[arg-type]
        if value is not None:
            f.value.CopyFrom(json_format.ParseDict(value, Value()))  # type: ignore[arg-type]  # any JSON value
        return f

    tagged = [cond("tags", pb.FILTER_OPERATOR_CONTAINS, "cooking")]
    assert ids(await _query(rag, corpus, q, top_k=10, filters=tagged)) == {"sourdough", "coffee"}
    recent = [cond("year", pb.FILTER_OPERATOR_GTE, 2022), cond("author", pb.FILTER_OPERATOR_NE, "linus")]
    assert ids(await _query(rag, corpus, q, top_k=10, filters=recent)) == {"sourdough", "black-holes"}
    not_in = [cond("author", pb.FILTER_OPERATOR_NOT_IN, ["ada", "grace", "mary"])]
    assert ids(await _query(rag, corpus, q, top_k=10, filters=not_in)) == {"tcp", "coffee"}
    assert ids(await _query(rag, corpus, q, top_k=10, filters=[cond("missing", pb.FILTER_OPERATOR_EXISTS)])) == set()
    hybrid = await _query(rag, corpus, "bread", top_k=10, filters=tagged, mode=pb.SEARCH_MODE_HYBRID)
    assert ids(hybrid) == {"sourdough", "coffee"} and hybrid.relevant_documents[0].document_id == "sourdough"


async def _plan(pool: Pool, ns: NamespaceRow, query: np.ndarray, conditions: list[Condition], toggles: str) -> str:
    statement, params = vector_search_sql(ns, query, 10, conditions)
    async with pool.connection() as conn, conn.transaction():
        for toggle in toggles.split():
            await conn.execute(f"SET LOCAL {toggle} = off")
        cur = await conn.execute(b"EXPLAIN " + statement.as_bytes(conn), params)
        return "\n".join(r[0] for r in await cur.fetchall())


async def test_the_vector_query_can_use_the_namespace_hnsw_index(
    store: RagStore, pool: Pool, corpus: str, minilm: MiniLMEmbedder
) -> None:
    ns = await store.get_namespace(None, corpus)
    assert ns is not None
    query = np.asarray((await minilm.embed(["volcano"]))[0], dtype=np.float32)
    # 8 documents are cheaper to sort than to search: rule the other plans out to see that the index applies
    # (the expression and the namespace literal match it).
    plan = await _plan(pool, ns, query, [], "enable_seqscan enable_bitmapscan enable_sort")
    assert f"Index Scan using rag_chunks_hnsw_{ns.id}" in plan, plan


async def test_the_planner_picks_the_hnsw_index_on_a_large_namespace(store: RagStore, pool: Pool) -> None:
    ns = await store.create_namespace(None, "large", embedder="local/all-MiniLM-L6-v2", dimension=384)
    rng = np.random.default_rng(7)
    vectors = rng.standard_normal((4000, 384)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    docs = [
        DocumentWrite(
            f"d{i}", f"doc {i}", {"group": i % 4}, "", 1, [ChunkWrite(f"doc {i} chunk {j}", 1) for j in range(4)]
        )
        for i in range(1000)
    ]
    for i, doc in enumerate(docs):
        doc.embeddings = vectors[i * 4 : i * 4 + 4]
    assert await store.write_documents(ns.id, docs) == 4000
    async with pool.connection() as conn:
        await conn.execute("ANALYZE rag_chunks")
        await conn.execute("ANALYZE rag_documents")
    plan = await _plan(pool, ns, vectors[0], [], "")
    assert f"Index Scan using rag_chunks_hnsw_{ns.id}" in plan, plan
    filtered = await _plan(pool, ns, vectors[0], [Condition(("group",), "eq", 1)], "")
    assert f"Index Scan using rag_chunks_hnsw_{ns.id}" in filtered, filtered
    hits = await store.search_vector(ns, vectors[0], 10, [Condition(("group",), "eq", 0)])
    assert hits[0].document_id == "d0" and hits[0].score == pytest.approx(1.0, abs=1e-5)
    assert len(hits) == 10 and all(h.metadata["group"] == 0 for h in hits)


async def test_reindexing_replaces_chunks_and_deleting_removes_them(rag: RagServicer, pool: Pool) -> None:
    long_text = " ".join(f"Sentence {i} is about glaciers carving valleys over millennia." for i in range(120))
    first = await _index(rag, "replace", [{"id": "doc", "content": long_text, "metadata": {"v": 1}}])
    assert first.chunk_count > 3
    again = await _index(
        rag, "replace", [{"id": "doc", "content": "Only a short note on tulips.", "metadata": {"v": 2}}]
    )
    assert again.chunk_count == 1
    response = await _query(rag, "replace", "glaciers carving valleys", top_k=10)
    assert [(m.document_id, m.content) for m in response.relevant_documents] == [
        ("doc", "Only a short note on tulips.")
    ]
    assert response.relevant_documents[0].metadata["v"] == 2
    got = await rag.GetDocument(pb.GetDocumentRequest(namespace="replace", document_id="doc"), CTX)
    assert got.content == "Only a short note on tulips." and got.chunk_count == 1 and len(got.content_sha256) == 64
    # Unchanged content: metadata updated, nothing re-embedded.
    same = await _index(
        rag, "replace", [{"id": "doc", "content": "Only a short note on tulips.", "metadata": {"v": 3}}]
    )
    assert same.usage.prompt_tokens == 0
    assert (await rag.GetDocument(pb.GetDocumentRequest(namespace="replace", document_id="doc"), CTX)).metadata[
        "v"
    ] == 3

    deleted = await rag.DeleteDocument(pb.DeleteDocumentRequest(namespace="replace", document_id="doc"), CTX)
    assert deleted.deleted and deleted.chunks_deleted == 1
    assert not (await _query(rag, "replace", "tulips")).relevant_documents
    async with pool.connection() as conn:
        cur = await conn.execute("SELECT count(*) FROM rag_chunks WHERE document_id = 'doc'")
        assert await cur.fetchone() == (0,)
    again_deleted = await rag.DeleteDocument(pb.DeleteDocumentRequest(namespace="replace", document_id="doc"), CTX)
    assert not again_deleted.deleted
    with pytest.raises(ForgeError) as caught:
        await rag.GetDocument(pb.GetDocumentRequest(namespace="replace", document_id="doc"), CTX)
    assert caught.value.code == ErrorCode.NOT_FOUND


async def test_embedder_mismatch_is_failed_precondition(rag: RagServicer, corpus: str) -> None:
    other = await rag.CreateNamespace(
        pb.CreateNamespaceRequest(namespace=pb.Namespace(name="provider-ns", embedder="openai/text-embedding-fake")),
        CTX,
    )
    assert (other.embedder, other.dimension) == ("openai/text-embedding-fake", 8)
    with pytest.raises(ForgeError) as caught:
        await _query(rag, corpus, "volcano", embedder="openai/text-embedding-fake")
    assert caught.value.code == ErrorCode.FAILED_PRECONDITION and caught.value.reason == "EMBEDDER_MISMATCH"
    with pytest.raises(ForgeError) as caught:
        await rag.IndexDocuments(
            pb.IndexDocumentsRequest(
                namespace="provider-ns",
                embedder="local/all-MiniLM-L6-v2",
                documents=[_doc({"id": "x", "content": "t"})],
            ),
            CTX,
        )
    assert caught.value.code == ErrorCode.FAILED_PRECONDITION and "openai/text-embedding-fake" in str(caught.value)
    # The namespace's own (provider) embedder works, and a MiniLM query against it is refused.
    indexed = await rag.IndexDocuments(
        pb.IndexDocumentsRequest(
            namespace="provider-ns",
            embedder="openai/text-embedding-fake",
            documents=[_doc({"id": "x", "content": "hello"})],
        ),
        CTX,
    )
    assert indexed.chunk_count == 1
    with pytest.raises(ForgeError) as caught:
        await _query(rag, "provider-ns", "hello", embedder="local/all-MiniLM-L6-v2")
    assert caught.value.code == ErrorCode.FAILED_PRECONDITION and caught.value.reason == "EMBEDDER_MISMATCH"


async def test_a_namespace_whose_embedder_is_not_configured_is_failed_precondition(
    rag: RagServicer, store: RagStore
) -> None:
    await store.create_namespace(None, "elsewhere", embedder="ollama/nomic-embed-text", dimension=768)
    with pytest.raises(ForgeError) as caught:
        await _query(rag, "elsewhere", "anything")
    assert caught.value.code == ErrorCode.FAILED_PRECONDITION and caught.value.reason == "EMBEDDER_UNAVAILABLE"


async def test_namespaces_lifecycle(rag: RagServicer) -> None:
    created = await rag.CreateNamespace(
        pb.CreateNamespaceRequest(namespace=pb.Namespace(name="notes", description="my notes", chunk_size=64)), CTX
    )
    assert (created.embedder, created.dimension, created.chunk_size, created.chunk_overlap) == (
        "local/all-MiniLM-L6-v2",
        384,
        64,
        16,
    )
    with pytest.raises(ForgeError) as caught:
        await rag.CreateNamespace(pb.CreateNamespaceRequest(namespace=pb.Namespace(name="notes")), CTX)
    assert caught.value.code == ErrorCode.ALREADY_EXISTS
    for bad in (pb.Namespace(name="Bad Name"), pb.Namespace(name="big", chunk_size=1000)):
        with pytest.raises(ForgeError) as caught:
            await rag.CreateNamespace(pb.CreateNamespaceRequest(namespace=bad), CTX)
        assert caught.value.code == ErrorCode.INVALID_ARGUMENT
    await _index(rag, "notes", [{"id": f"n{i}", "content": f"note number {i}"} for i in range(3)])
    got = await rag.GetNamespace(pb.GetNamespaceRequest(name="notes"), CTX)
    assert (got.document_count, got.chunk_count, got.description) == (3, 3, "my notes")
    page = await rag.ListDocuments(pb.ListDocumentsRequest(namespace="notes", page_size=2), CTX)
    assert [d.document_id for d in page.documents] == ["n0", "n1"] and page.documents[0].content == ""
    rest = await rag.ListDocuments(
        pb.ListDocumentsRequest(namespace="notes", page_token=page.next_page_token, include_content=True), CTX
    )
    assert [d.content for d in rest.documents] == ["note number 2"] and rest.next_page_token == ""
    listed = await rag.ListNamespaces(pb.ListNamespacesRequest(page_size=100), CTX)
    assert "notes" in [n.name for n in listed.namespaces]
    gone = await rag.DeleteNamespace(pb.DeleteNamespaceRequest(name="notes"), CTX)
    assert (gone.deleted, gone.documents_deleted, gone.chunks_deleted) == (True, 3, 3)
    with pytest.raises(ForgeError) as caught:
        await rag.GetNamespace(pb.GetNamespaceRequest(name="notes"), CTX)
    assert caught.value.code == ErrorCode.NOT_FOUND


async def test_bad_requests_are_invalid_argument(rag: RagServicer, corpus: str) -> None:
    for request in (
        pb.QueryRequest(namespace=corpus, query=""),
        pb.QueryRequest(namespace=corpus, query="x", top_k=1000),
        pb.QueryRequest(namespace=corpus, query="x", filters=[pb.MetadataFilter(key="a", op=pb.FILTER_OPERATOR_EQ)]),
    ):
        with pytest.raises(ForgeError) as caught:
            await rag.Query(request, CTX)
        assert caught.value.code == ErrorCode.INVALID_ARGUMENT
    with pytest.raises(ForgeError) as caught:
        await _index(rag, "untouched", [{"id": "ok", "content": "fine"}, {"id": "empty", "content": "  "}])
    assert caught.value.code == ErrorCode.INVALID_ARGUMENT
    assert [v.field for v in caught.value.violations] == ["documents[1].content"]
    with pytest.raises(ForgeError) as caught:  # nothing was written, not even the namespace
        await rag.GetNamespace(pb.GetNamespaceRequest(name="untouched"), CTX)
    assert caught.value.code == ErrorCode.NOT_FOUND


async def test_import_documents_streams_batches(rag: RagServicer) -> None:
    async def batches() -> AsyncIterator[pb.ImportDocumentsRequest]:
        for b in range(3):
            docs = [
                _doc({"id": f"b{b}-{i}", "content": f"Imported record {b}-{i} about topic {i}."}) for i in range(20)
            ]
            docs.append(_doc({"id": f"bad-{b}", "content": ""}))
            yield pb.ImportDocumentsRequest(namespace="imported" if b == 0 else "", documents=docs)

    response = await rag.ImportDocuments(batches(), CTX)
    assert (response.namespace, response.document_count, response.chunk_count) == ("imported", 60, 60)
    assert [f.document_id for f in response.failures] == ["bad-0", "bad-1", "bad-2"]
    assert response.usage.prompt_tokens > 0


async def test_create_embeddings(rag: RagServicer) -> None:
    response = await rag.CreateEmbeddings(pb.CreateEmbeddingsRequest(input=["hello", "world"]), CTX)
    assert (response.model, response.dimension, len(response.data)) == ("local/all-MiniLM-L6-v2", 384, 2)
    assert [d.index for d in response.data] == [0, 1]
    assert np.linalg.norm(np.array(response.data[0].embedding)) == pytest.approx(1.0, abs=1e-5)
    assert response.usage.prompt_tokens == 6
    provider = await rag.CreateEmbeddings(
        pb.CreateEmbeddingsRequest(input=["hello"], model="openai/text-embedding-fake"), CTX
    )
    assert (provider.model, provider.dimension) == ("openai/text-embedding-fake", 8)
    with pytest.raises(ForgeError) as caught:
        await rag.CreateEmbeddings(pb.CreateEmbeddingsRequest(input=["x"], dimensions=128), CTX)
    assert caught.value.code == ErrorCode.INVALID_ARGUMENT
