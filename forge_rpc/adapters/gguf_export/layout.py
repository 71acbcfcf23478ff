"""Where a Hugging Face weight lives in a GGUF, and in which row order: llama.cpp's converter renames tensors
(`model.layers.0.self_attn.q_proj.weight` → `blk.0.attn_q.weight`) and, for the llama architecture, reorders the
rows of Q and K so its RoPE rotates adjacent pairs (convert_hf_to_gguf's `LlamaModel.permute`). A LoRA delta B·A
must land on the same tensor in the same order; a row permutation of B·A is the permutation of B's rows."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gguf
import numpy as np
import numpy.typing as npt

from ...domain import FailedPrecondition
from .peft_adapter import LoraAdapter, LoraPair

__all__ = ["BaseLayout", "Delta", "base_layout", "permute_rows"]

Matrix = npt.NDArray[np.float32]

# Architectures whose converter maps HF weights one to one (no fused QKV, no split experts), checked against
# llama.cpp's conversion/llama.py and conversion/qwen.py; only llama reorders Q/K rows.
SUPPORTED = frozenset({"llama", "qwen2", "qwen3"})
PERMUTED = frozenset({"llama"})
_ARCHS = {name: arch for arch, name in gguf.MODEL_ARCH_NAMES.items()}


def permute_rows(rows: Matrix, n_head: int) -> Matrix:
    """convert_hf_to_gguf's `LlamaModel.permute`: per head, the two halves of the rotary dimensions interleaved."""
    shape = rows.shape
    return rows.reshape(n_head, 2, shape[0] // n_head // 2, *shape[1:]).swapaxes(1, 2).reshape(shape)


@dataclass(frozen=True, slots=True)
class Delta:
    """One adapted GGUF tensor: W += scale · B · A, with B already in the GGUF's row order."""

    pair: LoraPair
    b: Matrix

    def matrix(self) -> Matrix:
        return (self.pair.scale * (self.b @ self.pair.a)).astype(np.float32)


@dataclass(frozen=True, slots=True)
class BaseLayout:
    arch: str
    tensors: dict[str, Any]
    """GGUF tensor name → gguf.ReaderTensor."""
    deltas: dict[str, Delta]
    """GGUF tensor name → what the adapter adds to it, in the base's tensor order."""


def _field(reader: gguf.GGUFReader, key: str) -> Any:
    field = reader.fields.get(key)
    return field.contents() if field is not None else None


def _mismatch(why: str) -> Exception:
    return FailedPrecondition(why, "ADAPTER_BASE_MISMATCH")


def base_layout(reader: gguf.GGUFReader, adapter: LoraAdapter) -> BaseLayout:
    """Matches every adapted weight to its base tensor, checking names and shapes."""
    arch = str(_field(reader, "general.architecture") or "")
    if arch not in SUPPORTED:
        raise FailedPrecondition(
            f"the base GGUF's architecture is {arch or 'unknown'}; GGUF export supports {', '.join(sorted(SUPPORTED))}",
            "ARCHITECTURE_UNSUPPORTED",
        )
    blocks = int(_field(reader, f"{arch}.block_count") or 0)
    n_head = int(_field(reader, f"{arch}.attention.head_count") or 0)
    n_head_kv = int(_field(reader, f"{arch}.attention.head_count_kv") or n_head)
    names = gguf.get_tensor_name_map(_ARCHS[arch], blocks)
    tensors = {t.name: t for t in reader.tensors}
    found: dict[str, Delta] = {}
    for pair in adapter.pairs:
        name = names.get_name(pair.target, try_suffixes=(".weight", ".bias"))
        tensor = tensors.get(name or "")
        if name is None or tensor is None:
            raise _mismatch(f"the adapter changes {pair.target}, which the base GGUF has no tensor for")
        out_features, in_features = (int(d) for d in reversed(tensor.shape))  # GGUF shapes are innermost first
        if pair.a.shape[1] != in_features or pair.b.shape[0] != out_features:
            raise _mismatch(
                f"the adapter's {pair.target} is {pair.b.shape[0]}×{pair.a.shape[1]} but the base GGUF's {name} is "
                f"{out_features}×{in_features}: the adapter was trained on another base model"
            )
        b = pair.b
        if arch in PERMUTED and name.endswith(("attn_q.weight", "attn_k.weight")):
            b = permute_rows(b, n_head if name.endswith("attn_q.weight") else n_head_kv)
        found[name] = Delta(pair, b)
    ordered = {name: found[name] for name in tensors if name in found}
    return BaseLayout(arch, tensors, ordered)
