"""RAG tests: the store suite's session PostgreSQL (a database of this module's own), the real ONNX MiniLM
loaded once per session, and a servicer over both."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest_asyncio
from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

from forge_rpc.adapters.embedders import EmbedderDirectory, MiniLMEmbedder, OpenAIEmbedder
from forge_rpc.adapters.store import create_pool, migrate
from forge_rpc.adapters.store.rag_store import RagStore
from forge_rpc.services.rag import RagServicer
from tests.fakes import FakeUpstream
from tests.ledger.conftest import FakeContext, local_operator  # noqa: F401  # autouse, by name
from tests.store.conftest import database, embedded_pg  # noqa: F401  # the session server and per-module DB

Pool = AsyncConnectionPool[AsyncConnection[Any]]

__all__ = ["FakeContext"]


@pytest_asyncio.fixture(scope="session")
async def minilm() -> MiniLMEmbedder:
    embedder = MiniLMEmbedder()
    await embedder.load()
    return embedder


@pytest_asyncio.fixture(scope="module")
async def pool(database: str) -> AsyncIterator[Pool]:  # noqa: F811  # the imported fixture, by name
    await migrate(database)
    p = create_pool(database, min_size=1, max_size=4, timeout_s=5.0)
    await p.open(wait=True)
    yield p
    await p.close()


@pytest_asyncio.fixture(scope="module")
async def store(pool: Pool) -> RagStore:
    return RagStore(pool)


@pytest_asyncio.fixture(scope="module")
async def embedders(minilm: MiniLMEmbedder, fake: FakeUpstream) -> AsyncIterator[EmbedderDirectory]:
    made: list[OpenAIEmbedder] = []

    def fake_openai(model: str) -> OpenAIEmbedder:
        made.append(OpenAIEmbedder("openai", model, fake.openai_base, "sk-test", dimension=8))
        return made[-1]

    yield EmbedderDirectory([minilm], {"openai": fake_openai})
    for e in made:
        await e.close()


@pytest_asyncio.fixture(scope="module")
async def rag(store: RagStore, embedders: EmbedderDirectory) -> RagServicer:
    return RagServicer(store, embedders, engine=None)
