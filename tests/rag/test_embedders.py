"""The local ONNX MiniLM (real model) and the OpenAI-compatible embedder (against the fake upstream)."""

from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest

from forge_rpc.adapters.embedders import EmbedderDirectory, MiniLMEmbedder, OpenAIEmbedder, TokenAware
from forge_rpc.domain import ErrorCode, ForgeError
from tests.fakes import FakeUpstream


async def test_vectors_are_384_d_unit_length_and_deterministic(minilm: MiniLMEmbedder) -> None:
    texts = ["A cat sits on the mat.", "Quarterly revenue grew by ten percent.", ""]
    first = np.array(await minilm.embed(texts))
    again = np.array(await minilm.embed(texts))
    assert first.shape == (3, 384)
    assert np.allclose(np.linalg.norm(first, axis=1), 1.0, atol=1e-5)
    assert np.array_equal(first, again)


async def test_batching_does_not_change_a_vector(minilm: MiniLMEmbedder) -> None:
    texts = [f"sentence {i} " + "word " * (i % 17) for i in range(70)]  # several batches, mixed lengths
    together = np.array(await minilm.embed(texts))
    alone = np.array(await minilm.embed([texts[42]]))[0]
    assert np.allclose(together[42], alone, atol=1e-5)


async def test_similar_sentences_are_closer(minilm: MiniLMEmbedder) -> None:
    cat, kitten, stocks = np.array(
        await minilm.embed(["A cat sits on the mat.", "A kitten rests on a rug.", "Stock markets fell sharply."])
    )
    assert cat @ kitten > 0.5 > cat @ stocks


async def test_token_spans_and_counts(minilm: MiniLMEmbedder) -> None:
    assert isinstance(minilm, TokenAware)
    text = "Tokenization-aware chunking!"
    spans = minilm.token_spans(text)
    assert spans[0] == (0, 5) and spans[-1] == (len(text) - 1, len(text))
    result = await minilm.embed_counted(["hello world"])
    assert result.prompt_tokens == 4  # [CLS] hello world [SEP]


async def test_embedding_does_not_block_the_event_loop(minilm: MiniLMEmbedder) -> None:
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.005)
            ticks += 1

    task = asyncio.create_task(ticker())
    started = time.perf_counter()
    await minilm.embed(["a moderately long sentence about nothing in particular"] * 256)
    elapsed = time.perf_counter() - started
    task.cancel()
    assert ticks >= elapsed / 0.005 / 4  # the loop kept ticking while the batch ran


async def test_throughput_report(minilm: MiniLMEmbedder) -> None:
    texts = [f"Document {i}: " + "the quick brown fox jumps over the lazy dog " * 5 for i in range(256)]
    started = time.perf_counter()
    result = await minilm.embed_counted(texts)
    elapsed = time.perf_counter() - started
    print(f"\nlocal MiniLM: {len(texts) / elapsed:.0f} texts/s, {result.prompt_tokens / elapsed:.0f} tokens/s")


async def test_openai_compatible_embedder_against_the_fake(fake: FakeUpstream) -> None:
    embedder = OpenAIEmbedder("openai", "text-embedding-fake", fake.openai_base, "sk-test")
    try:
        result = await embedder.embed_counted(["one", "two words"])
        assert embedder.dimension == 8 and len(result.vectors) == 2
        assert np.allclose(np.linalg.norm(np.array(result.vectors), axis=1), 1.0, atol=1e-6)
        assert result.prompt_tokens == 3
        assert await embedder.embed(["one"]) == result.vectors[:1]
    finally:
        await embedder.close()


async def test_openai_compatible_embedder_maps_a_bad_key(fake: FakeUpstream) -> None:
    embedder = OpenAIEmbedder("openai", "text-embedding-fake", fake.openai_base, "bad-key")
    try:
        with pytest.raises(ForgeError) as caught:
            await embedder.embed(["x"])
        assert caught.value.code == ErrorCode.FAILED_PRECONDITION and caught.value.reason == "PROVIDER_AUTH"
    finally:
        await embedder.close()


def test_directory_resolves_names(minilm: MiniLMEmbedder) -> None:
    directory = EmbedderDirectory([minilm])
    assert directory.resolve("") is minilm
    assert directory.resolve("local/all-MiniLM-L6-v2") is minilm
    with pytest.raises(ForgeError) as caught:
        directory.resolve("nope/model")
    assert caught.value.code == ErrorCode.INVALID_ARGUMENT
