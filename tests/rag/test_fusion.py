"""Reciprocal rank fusion of the vector and full-text rankings."""

from __future__ import annotations

import pytest

from forge_rpc.adapters.store.rag_store import Match, fuse_rankings


def _m(doc: str, vector: float | None = None, text: float | None = None) -> Match:
    return Match(doc, 0, doc, {}, vector_score=vector, text_score=text)


def test_a_chunk_both_rankings_like_wins() -> None:
    vector = [_m("a", vector=0.9), _m("b", vector=0.8), _m("c", vector=0.7)]
    text = [_m("c", text=0.5), _m("b", text=0.4)]
    fused = fuse_rankings({"vector": vector, "text": text}, limit=3)
    # c: 1/63 + 1/61 just beats b: 1/62 + 1/62; a, first in one ranking only, comes last.
    assert [m.document_id for m in fused] == ["c", "b", "a"]
    assert fused[0].score == pytest.approx(1 / 63 + 1 / 61)
    assert (fused[0].vector_score, fused[0].text_score, fused[0].ranks) == (0.7, 0.5, {"vector": 3, "text": 1})
    assert (fused[2].vector_score, fused[2].text_score) == (0.9, None)


def test_limit_and_empty_rankings() -> None:
    assert fuse_rankings({"vector": [], "text": []}, limit=5) == []
    assert len(fuse_rankings({"vector": [_m(str(i)) for i in range(10)]}, limit=4)) == 4
