"""Token-aware chunking: windows of at most chunk_size tokens, overlapping, covering the whole text."""

from __future__ import annotations

import itertools

import pytest

from forge_rpc.domain.chunking import chunk_text, word_spans


def test_blank_text_has_no_chunks() -> None:
    assert chunk_text("  \n ") == []


def test_short_text_is_one_chunk() -> None:
    [chunk] = chunk_text("Just a few words here.", chunk_size=16, overlap=4)
    assert (chunk.index, chunk.text, chunk.token_count, chunk.start) == (0, "Just a few words here.", 5, 0)


def test_windows_overlap_and_cover_every_word() -> None:
    words = [f"w{i}" for i in range(100)]
    chunks = chunk_text(" ".join(words), chunk_size=20, overlap=5)
    assert all(c.token_count <= 20 for c in chunks)
    seen = [w for c in chunks for w in c.text.split()]
    assert set(seen) == set(words)
    for before, after in itertools.pairwise(chunks):
        assert before.text.split()[-5:] == after.text.split()[:5]  # exactly `overlap` shared tokens
    assert [c.index for c in chunks] == list(range(len(chunks)))


def test_prefers_to_end_at_a_sentence() -> None:
    text = " ".join(["word"] * 16 + ["end."] + ["more"] * 30)
    first = chunk_text(text, chunk_size=20, overlap=2)[0]
    assert first.text.endswith("end.") and first.token_count == 17


def test_custom_tokenizer_spans_are_used() -> None:
    def chars(text: str) -> list[tuple[int, int]]:
        return [(i, i + 1) for i, ch in enumerate(text) if not ch.isspace()]

    chunks = chunk_text("abcdefghij", chunk_size=4, overlap=1, spans=chars)
    assert [c.text for c in chunks] == ["abcd", "defg", "ghij"]


def test_offsets_point_into_the_text() -> None:
    text = "alpha  beta\n\ngamma delta epsilon"
    for c in chunk_text(text, chunk_size=2, overlap=0, spans=word_spans):
        assert text[c.start : c.end] == c.text


@pytest.mark.parametrize(("size", "overlap"), [(0, 0), (4, 4), (4, -1)])
def test_rejects_bad_settings(size: int, overlap: int) -> None:
    with pytest.raises(ValueError, match=r"chunk_size|overlap"):
        chunk_text("some text", chunk_size=size, overlap=overlap)
