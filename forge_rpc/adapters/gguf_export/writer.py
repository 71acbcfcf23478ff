"""Writes a trained LoRA adapter as GGUF, in llama.cpp's two forms:

- an adapter file (`general.type` adapter, `adapter.type` lora, `adapter.lora.alpha`, tensors
  `<base tensor>.lora_a` / `.lora_b`) that llama.cpp and Ollama (`ADAPTER`) apply on top of the base GGUF;
- a merged model: the base GGUF with W + scale·B·A in place of each adapted weight, its metadata and tokenizer
  kept, written one tensor at a time so memory stays at about one weight matrix.

Both match what llama.cpp's convert_lora_to_gguf.py writes (names, shapes, Q/K row order), without torch.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gguf
import numpy as np
import numpy.typing as npt
from gguf import GGMLQuantizationType as Q
from gguf import LlamaFileType as F

from .layout import BaseLayout, base_layout
from .peft_adapter import LoraAdapter

__all__ = ["QUANTIZATIONS", "export_adapter", "export_merged"]

QUANTIZATIONS: dict[str, tuple[Q, F]] = {
    "f32": (Q.F32, F.ALL_F32),
    "f16": (Q.F16, F.MOSTLY_F16),
    "q8_0": (Q.Q8_0, F.MOSTLY_Q8_0),
}
"""The `quantization` a deployment may ask for → the GGUF tensor type and file type written."""
# Read from the base and rewritten by the writer itself, or describing the base file rather than the model.
_OWN_KEYS = frozenset({"general.architecture", "general.file_type", "general.alignment"})


def _atomic(out: Path, write: Callable[[Path], None]) -> Path:
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    try:
        write(tmp)
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return out


def export_adapter(base: Path, adapter: LoraAdapter, out: Path, quantization: str) -> Path:
    """The adapter GGUF. Its matrices are f16 unless f32 is asked for: they are tiny, and their rank-wide rows
    (8, 16…) are shorter than a q8_0 block."""
    layout = base_layout(gguf.GGUFReader(base), adapter)
    dtype = np.float32 if quantization == "f32" else np.float16
    # llama.cpp scales every pair by alpha / its rank; a pair whose own scale differs (rsLoRA, alpha_pattern)
    # has the difference folded into B.
    first = next(iter(layout.deltas.values())).pair
    alpha = first.scale * first.rank

    def write(tmp: Path) -> None:
        writer = gguf.GGUFWriter(tmp, layout.arch)
        writer.add_type(gguf.GGUFType.ADAPTER)
        writer.add_string(gguf.Keys.Adapter.TYPE, "lora")
        writer.add_float32(gguf.Keys.Adapter.LORA_ALPHA, alpha)
        for name, delta in layout.deltas.items():
            fold = delta.pair.scale * delta.pair.rank / alpha
            b = delta.b if math.isclose(fold, 1.0, rel_tol=1e-6) else delta.b * np.float32(fold)
            writer.add_tensor(f"{name}.lora_a", np.ascontiguousarray(delta.pair.a, dtype=dtype))
            writer.add_tensor(f"{name}.lora_b", np.ascontiguousarray(b, dtype=dtype))
        try:
            writer.write_header_to_file()
            writer.write_kv_data_to_file()
            writer.write_tensors_to_file()
        finally:
            writer.close()

    return _atomic(out, write)


def _copy_metadata(reader: gguf.GGUFReader, writer: gguf.GGUFWriter) -> None:
    for key, field in reader.fields.items():
        if key.startswith("GGUF.") or key in _OWN_KEYS:
            continue
        vtype = field.types[0]
        sub = field.types[-1] if vtype is gguf.GGUFValueType.ARRAY else None
        writer.add_key_value(key, field.contents(), vtype, sub)


def _encoded(values: npt.NDArray[np.float32], qtype: Q) -> tuple[npt.NDArray[Any], Q]:
    try:
        return gguf.quants.quantize(values, qtype), qtype
    except gguf.quants.QuantError:  # rows shorter than a block: llama.cpp's converter falls back to f16 too
        return values.astype(np.float16), Q.F16


def _nbytes(shape: tuple[int, ...], qtype: Q) -> tuple[int, Q]:
    block, size = gguf.GGML_QUANT_SIZES[qtype]
    if shape[-1] % block:
        qtype, (block, size) = Q.F16, gguf.GGML_QUANT_SIZES[Q.F16]
    return math.prod(shape) // block * size, qtype


def export_merged(base: Path, adapter: LoraAdapter, out: Path, quantization: str) -> Path:
    """The merged model. Adapted weights are written in `quantization`; every other tensor is copied as the base
    has it (re-encoding it could only lose precision)."""
    reader = gguf.GGUFReader(base)
    layout: BaseLayout = base_layout(reader, adapter)
    qtype, file_type = QUANTIZATIONS[quantization]

    def write(tmp: Path) -> None:
        writer = gguf.GGUFWriter(tmp, layout.arch)
        alignment = reader.fields.get("general.alignment")
        if alignment is not None:
            writer.data_alignment = int(alignment.contents())
            writer.add_custom_alignment(writer.data_alignment)
        _copy_metadata(reader, writer)
        writer.add_file_type(file_type)
        for name, t in layout.tensors.items():
            shape = tuple(int(d) for d in reversed(t.shape))
            if name in layout.deltas:
                nbytes, raw = _nbytes(shape, qtype)
            else:
                nbytes, raw = int(t.n_bytes), t.tensor_type
            writer.add_tensor_info(name, shape, np.dtype(np.float32), nbytes, raw_dtype=raw)
        try:
            writer.write_header_to_file()
            writer.write_kv_data_to_file()
            writer.write_ti_data_to_file()
            for name, t in layout.tensors.items():
                delta = layout.deltas.get(name)
                if delta is None:
                    writer.write_tensor_data(t.data)
                    continue
                shape = (delta.b.shape[0], delta.pair.a.shape[1])
                weights = gguf.quants.dequantize(t.data, t.tensor_type).reshape(shape)
                writer.write_tensor_data(_encoded(weights + delta.matrix(), qtype)[0])
        finally:
            writer.close()

    return _atomic(out, write)
