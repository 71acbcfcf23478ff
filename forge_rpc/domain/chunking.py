"""Token-aware chunking with overlap: splits a document into windows of at most `chunk_size` tokens, each
sharing `overlap` tokens with the one before, so a sentence cut at a boundary is still whole in one chunk.

Pure: "tokens" are whatever the `spans` callable says they are — the embedder's own tokenizer offsets when it
has one (so a chunk never exceeds what the model reads), whitespace-separated words otherwise.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

__all__ = ["Chunk", "TokenSpans", "chunk_text", "word_spans"]

#: (start, end) character offsets of each token of a text, in order.
TokenSpans = Callable[[str], Sequence[tuple[int, int]]]

_WORD = re.compile(r"\S+")
# A token that ends a sentence or a paragraph: a good place to end a chunk.
_SENTENCE_END = re.compile(r"[.!?;:]['\")\]]*$")


def word_spans(text: str) -> list[tuple[int, int]]:
    """Whitespace-separated words as tokens: about 0.75 of a subword tokenizer's count for English."""
    return [m.span() for m in _WORD.finditer(text)]


@dataclass(frozen=True, slots=True)
class Chunk:
    index: int
    """Position in the document, from 0."""
    text: str
    token_count: int
    start: int
    """Offset of the first character in the document."""
    end: int
    """Offset just past the last character."""


def _boundary(text: str, spans: Sequence[tuple[int, int]], lo: int, hi: int) -> int:
    """Where to end a window of spans[lo:hi]: after the last sentence end in its final quarter, else at hi."""
    floor = lo + max(1, (hi - lo) * 3 // 4)
    for j in range(hi, floor, -1):
        end = spans[j - 1][1]
        if _SENTENCE_END.search(text[spans[j - 1][0] : end]) or (end < len(text) and text[end] == "\n"):
            return j
    return hi


def chunk_text(
    text: str,
    *,
    chunk_size: int = 256,
    overlap: int = 32,
    spans: TokenSpans = word_spans,
) -> list[Chunk]:
    """The chunks of `text`, in order; none for blank text. `overlap` must be smaller than `chunk_size`."""
    if chunk_size < 1:
        raise ValueError("chunk_size must be positive")
    if not 0 <= overlap < chunk_size:
        raise ValueError("overlap must be at least 0 and less than chunk_size")
    tokens = list(spans(text))
    chunks: list[Chunk] = []
    lo = 0
    while lo < len(tokens):
        hi = min(lo + chunk_size, len(tokens))
        if hi < len(tokens):
            hi = _boundary(text, tokens, lo, hi)
        start, end = tokens[lo][0], tokens[hi - 1][1]
        chunks.append(Chunk(len(chunks), text[start:end], hi - lo, start, end))
        if hi == len(tokens):
            break
        # Step back by the overlap, but always move forward.
        lo = max(hi - overlap, lo + 1)
    return chunks
