"""`generate_response`: the answer comes from the retrieved chunks through a real ChatEngine (fake upstream)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from forge.rag.v1 import rag_pb2 as pb
from google.protobuf import json_format

from forge_rpc.adapters.accounting import LocalTokenCounter, PriceTable
from forge_rpc.adapters.embedders import EmbedderDirectory
from forge_rpc.adapters.providers.directory import ProviderDirectory
from forge_rpc.adapters.store.rag_store import RagStore
from forge_rpc.domain import ChatEngine, ChatParams, ChatResult
from forge_rpc.server.compose_engine import configured_models
from forge_rpc.server.config import DeploymentConfig
from forge_rpc.services.rag import RagServicer
from tests.fakes import FakeUpstream

from .conftest import FakeContext
from .corpus import DOCUMENTS

CTX = FakeContext()


@pytest_asyncio.fixture(scope="module")
async def answering(store: RagStore, embedders: EmbedderDirectory, fake: FakeUpstream) -> AsyncIterator[RagServicer]:
    directory = ProviderDirectory(
        configured_models(
            (
                DeploymentConfig("fake", "openai/gpt-fake", api_base=fake.openai_base, api_key="sk-test"),
                DeploymentConfig("fake/*", "openai/*", api_base=fake.openai_base, api_key="sk-test"),
            )
        ),
        ollama_host=fake.base_url,
        discover_ollama=False,
        default_model="fake",
    )
    engine = ChatEngine(directory, directory.providers, LocalTokenCounter(), PriceTable())
    rag = RagServicer(store, embedders, engine)
    await rag.IndexDocuments(
        pb.IndexDocumentsRequest(
            namespace="answers", documents=[json_format.ParseDict(d, pb.Document()) for d in DOCUMENTS]
        ),
        CTX,
    )
    yield rag
    await directory.close()


async def test_answer_is_generated_from_the_retrieved_chunks(answering: RagServicer, fake: FakeUpstream) -> None:
    response = await answering.Query(
        pb.QueryRequest(
            namespace="answers",
            query="What makes a mountain spew melted stone?",
            top_k=2,
            generate_response=True,
            model="fake/gpt-fake@tag=rag-answer",
            max_tokens=50,
        ),
        CTX,
    )
    assert response.generated_response.startswith("tok0 ")
    assert response.usage.completion_tokens > 0 and response.usage.prompt_tokens > 0
    assert response.usage.total_tokens == response.usage.prompt_tokens + response.usage.completion_tokens
    assert response.model == "gpt-fake@tag=rag-answer"
    assert response.relevant_documents[0].document_id == "volcanoes"
    # The fake writes no [n] markers, so every source given is cited, in order.
    assert next((c.index, c.document_id) for c in response.citations) == (1, "volcanoes")
    assert response.citations[0].title == "Volcanoes"
    [record] = await fake.requests(tag="rag-answer")
    prompt = record["body"]["messages"][-1]["content"]
    assert "[1] (document volcanoes, 'Volcanoes')" in prompt and "magma" in prompt
    assert prompt.endswith("Question: What makes a mountain spew melted stone?")
    assert record["body"]["max_tokens"] == 50


async def test_without_an_engine_generation_is_failed_precondition(
    store: RagStore, embedders: EmbedderDirectory
) -> None:
    from forge_rpc.domain import ErrorCode, ForgeError

    rag = RagServicer(store, embedders, engine=None)
    with pytest.raises(ForgeError) as caught:
        await rag.Query(pb.QueryRequest(namespace="answers", query="x", generate_response=True), CTX)
    assert caught.value.code == ErrorCode.FAILED_PRECONDITION


async def test_citations_follow_the_markers_in_the_answer(
    answering: RagServicer, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = answering._engine
    assert engine is not None
    original = engine.complete

    async def scripted(params: ChatParams, timeout: float | None) -> ChatResult:
        result = await original(params, timeout)
        result.completion.text = "Magma rises and erupts [2]; see also [1] and [9]."  # [9] names no source
        return result

    monkeypatch.setattr(engine, "complete", scripted)
    response = await answering.Query(
        pb.QueryRequest(namespace="answers", query="volcano eruptions", top_k=3, generate_response=True), CTX
    )
    hits = response.relevant_documents
    assert [(c.index, c.document_id) for c in response.citations] == [
        (1, hits[0].document_id),
        (2, hits[1].document_id),
    ]
