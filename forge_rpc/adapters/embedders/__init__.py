"""Embedders: text → vectors for RAG and `CreateEmbeddings`. The local ONNX MiniLM works offline and is the
default; provider embedders (OpenAI-compatible `/v1/embeddings`) slot in behind the same protocol."""

from .directory import DEFAULT_EMBEDDER, EmbedderDirectory
from .onnx_minilm import MiniLMEmbedder
from .openai_compat import OpenAIEmbedder
from .protocol import Embedder, Embeddings, TokenAware

__all__ = [
    "DEFAULT_EMBEDDER",
    "Embedder",
    "EmbedderDirectory",
    "Embeddings",
    "MiniLMEmbedder",
    "OpenAIEmbedder",
    "TokenAware",
]
