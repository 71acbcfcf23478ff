"""RAG benchmark (issue 4): N chunks of 384-d vectors in one namespace — query p50/p99 through the HNSW index,
recall@10 against an exact scan, ingestion chunks/s, and the local embedder's throughput reported separately.

    uv run python -m tests.rag.bench_rag [--chunks 100000] [--queries 200]

The vectors are synthetic (clustered, unit length) so 100,000 of them take seconds to make instead of the
half hour MiniLM needs on two cores; the embedder's own rate is measured on real text and printed beside it.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

import numpy as np
import numpy.typing as npt

from forge_rpc.adapters.embedders import MiniLMEmbedder
from forge_rpc.adapters.store import create_pool, migrate
from forge_rpc.adapters.store.rag_store import ChunkWrite, DocumentWrite, RagStore
from forge_rpc.server.database import EmbeddedPostgres


def _vectors(n: int, centres: npt.NDArray[np.float32], noise: float, seed: int) -> npt.NDArray[np.float32]:
    """Unit vectors scattered around `centres`: like embeddings, they bunch by topic."""
    rng = np.random.default_rng(seed)
    picked = centres[rng.integers(0, len(centres), n)]
    out = picked + noise * rng.standard_normal((n, centres.shape[1])).astype(np.float32)
    unit: npt.NDArray[np.float32] = out / np.linalg.norm(out, axis=1, keepdims=True)
    return unit


async def main(chunks: int, queries: int, noise: float, beams: list[int], per_doc: int = 10) -> None:
    embedder = MiniLMEmbedder()
    await embedder.load()
    sample = [f"Passage {i} describes a topic in a sentence or two, as a typical chunk would." * 3 for i in range(256)]
    started = time.perf_counter()
    await embedder.embed(sample)
    print(f"embedding (local MiniLM, real text): {len(sample) / (time.perf_counter() - started):.0f} chunks/s")

    with tempfile.TemporaryDirectory() as tmp:
        server = EmbeddedPostgres(Path(tmp), durable=False)
        await server.start()
        try:
            url = await server.create_database("bench_rag")
            await migrate(url)
            pool = create_pool(url, min_size=1, max_size=4)
            await pool.open(wait=True)
            store = RagStore(pool)
            ns = await store.create_namespace(None, "bench", embedder=embedder.name, dimension=384)
            centres = np.random.default_rng(0).standard_normal((max(chunks // 100, 10), 384)).astype(np.float32)
            data = _vectors(chunks, centres, noise, 1)
            started = time.perf_counter()
            batch: list[DocumentWrite] = []
            for d in range(chunks // per_doc):
                doc = DocumentWrite(
                    f"doc-{d:06d}",
                    "",
                    {"group": d % 10},
                    "",
                    per_doc,
                    [ChunkWrite(f"chunk {d}-{j}", 10) for j in range(per_doc)],
                    data[d * per_doc : (d + 1) * per_doc],
                )
                batch.append(doc)
                if len(batch) == 100:
                    await store.write_documents(ns.id, batch)
                    batch = []
            if batch:
                await store.write_documents(ns.id, batch)
            took = time.perf_counter() - started
            print(
                f"ingestion (store + HNSW, embedding excluded): {chunks} chunks in {took:.1f}s = {chunks / took:.0f}/s"
            )
            async with pool.connection() as conn:
                await conn.execute("ANALYZE rag_chunks")
                await conn.execute("ANALYZE rag_documents")

            probes = _vectors(queries, centres, noise, 2)  # questions on the same topics as the data
            truths = []
            for q in probes:
                exact = np.argsort(-(data @ q))[:10]
                truths.append({(f"doc-{i // per_doc:06d}", int(i % per_doc)) for i in exact})
            for beam in beams:
                searcher = RagStore(pool, ef_search=beam)
                latencies, recalls = [], []
                for q, truth in zip(probes, truths, strict=True):
                    started = time.perf_counter()
                    hits = await searcher.search_vector(ns, q, 10)
                    latencies.append((time.perf_counter() - started) * 1000)
                    recalls.append(len(truth & {(h.document_id, h.chunk_index) for h in hits}) / 10)
                print(
                    f"query top-10 over {chunks} chunks, ef_search {beam}: p50 {np.percentile(latencies, 50):.2f} ms, "
                    f"p99 {np.percentile(latencies, 99):.2f} ms, recall@10 {np.mean(recalls):.3f} (exact scan as truth)"
                )
            await pool.close()
        finally:
            await server.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--chunks", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--noise", type=float, default=0.3, help="spread around cluster centres (0.6: much harder)")
    parser.add_argument("--ef-search", type=int, nargs="+", default=[40, 100, 200])
    args = parser.parse_args()
    asyncio.run(main(args.chunks, args.queries, args.noise, args.ef_search))
