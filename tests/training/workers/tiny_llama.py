"""A tiny llama (2 blocks, 64 wide, grouped-query attention) for GGUF tests: its Hugging Face weights, the GGUF
llama.cpp's converter would make of them, a numpy forward pass with Hugging Face's semantics (rotate-half RoPE),
and PEFT-format LoRA adapters for it. llama.cpp running the GGUF must agree with the numpy forward pass: that is
what shows a GGUF (and a deployed merge or adapter) means the same model as the trained weights."""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gguf
import numpy as np
import numpy.typing as npt

Array = npt.NDArray[np.float32]
Weights = dict[str, Array]


@dataclass(frozen=True, slots=True)
class Shape:
    width: int = 64
    heads: int = 4
    kv_heads: int = 2
    ffn: int = 128
    blocks: int = 2

    @property
    def head_dim(self) -> int:
        return self.width // self.heads

    def linear(self) -> dict[str, tuple[int, int]]:
        """Module (under `model.layers.N.`) → (out, in) of every linear weight of a block."""
        d, kv, f = self.width, self.kv_heads * self.head_dim, self.ffn
        return {
            "self_attn.q_proj": (d, d),
            "self_attn.k_proj": (kv, d),
            "self_attn.v_proj": (kv, d),
            "self_attn.o_proj": (d, d),
            "mlp.gate_proj": (f, d),
            "mlp.up_proj": (f, d),
            "mlp.down_proj": (d, f),
        }


TINY = Shape()


def byte_tokens() -> list[str]:
    """GPT-2's byte-level alphabet, so llama.cpp's BPE vocabulary loads (tests feed token ids, never text)."""
    shown = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    chars, extra = dict(zip(shown, shown, strict=True)), 0
    for b in range(256):
        if b not in chars:
            chars[b], extra = 256 + extra, extra + 1
    return [chr(chars[b]) for b in range(256)] + ["Ġt"]


def converter_permute(w: Array, n_head: int) -> Array:
    """convert_hf_to_gguf.py's `LlamaModel.permute`, transcribed: how llama.cpp's GGUFs order Q and K rows."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def random_weights(seed: int = 0, shape: Shape = TINY) -> Weights:
    rng = np.random.default_rng(seed)
    vocab, d = len(byte_tokens()), shape.width
    w: dict[str, Any] = {
        "model.embed_tokens.weight": rng.normal(0, 0.5, (vocab, d)),
        "model.norm.weight": 1 + rng.normal(0, 0.1, d),
    }
    for i in range(shape.blocks):
        p = f"model.layers.{i}."
        w[p + "input_layernorm.weight"] = 1 + rng.normal(0, 0.1, d)
        w[p + "post_attention_layernorm.weight"] = 1 + rng.normal(0, 0.1, d)
        for module, (out, inp) in shape.linear().items():
            w[f"{p}{module}.weight"] = rng.normal(0, 1 / np.sqrt(inp), (out, inp))
    return {k: np.asarray(v, dtype=np.float32) for k, v in w.items()}


def write_gguf(path: Path, weights: Weights, shape: Shape = TINY) -> Path:
    """The GGUF llama.cpp's converter would write for these weights (f32, tied output embedding)."""
    vocab = byte_tokens()
    w = gguf.GGUFWriter(path, "llama")
    w.add_context_length(256)
    w.add_embedding_length(shape.width)
    w.add_block_count(shape.blocks)
    w.add_feed_forward_length(shape.ffn)
    w.add_head_count(shape.heads)
    w.add_head_count_kv(shape.kv_heads)
    w.add_rope_dimension_count(shape.head_dim)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_rope_freq_base(10000.0)
    w.add_vocab_size(len(vocab))
    w.add_file_type(gguf.LlamaFileType.ALL_F32)
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("default")
    w.add_token_list(vocab)
    w.add_token_types([1] * len(vocab))
    w.add_token_merges(["Ġ t"])
    w.add_bos_token_id(0)
    w.add_eos_token_id(1)
    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, shape.blocks)
    for name, value in weights.items():
        if name.endswith("q_proj.weight"):
            value = converter_permute(value, shape.heads)
        elif name.endswith("k_proj.weight"):
            value = converter_permute(value, shape.kv_heads)
        target = names.get_name(name, try_suffixes=(".weight",))
        assert target is not None, name
        w.add_tensor(target, value)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def _rms(x: npt.NDArray[np.float64], g: Array) -> npt.NDArray[np.float64]:
    return np.asarray(x / np.sqrt((x * x).mean(-1, keepdims=True) + 1e-5) * g, dtype=np.float64)


def _rope(x: npt.NDArray[np.float64], theta: float = 10000.0) -> npt.NDArray[np.float64]:
    """Hugging Face's RoPE: dimension i turns with i + half (rotate_half); x is (tokens, heads, head_dim)."""
    half = x.shape[-1] // 2
    angles = np.arange(x.shape[0])[:, None] * theta ** (-np.arange(half) / half)[None]
    cos, sin = np.tile(np.cos(angles), 2)[:, None], np.tile(np.sin(angles), 2)[:, None]
    return np.asarray(x * cos + np.concatenate([-x[..., half:], x[..., :half]], -1) * sin, dtype=np.float64)


def hf_forward(w: Weights, tokens: list[int], shape: Shape = TINY) -> npt.NDArray[np.float64]:
    """Logits at every position, computed as transformers' LlamaForCausalLM does."""
    x = w["model.embed_tokens.weight"][tokens].astype(np.float64)
    n, hd, group = len(tokens), shape.head_dim, shape.heads // shape.kv_heads
    causal = np.triu(np.full((n, n), -np.inf), 1)
    for i in range(shape.blocks):
        p = f"model.layers.{i}."
        h = _rms(x, w[p + "input_layernorm.weight"])
        q = _rope((h @ w[p + "self_attn.q_proj.weight"].T).reshape(n, shape.heads, hd))
        k = np.repeat(_rope((h @ w[p + "self_attn.k_proj.weight"].T).reshape(n, shape.kv_heads, hd)), group, 1)
        v = np.repeat((h @ w[p + "self_attn.v_proj.weight"].T).reshape(n, shape.kv_heads, hd), group, 1)
        scores = np.einsum("thd,shd->hts", q, k) / np.sqrt(hd) + causal
        att = np.exp(scores - scores.max(-1, keepdims=True))
        att /= att.sum(-1, keepdims=True)
        x = x + np.einsum("hts,shd->thd", att, v).reshape(n, shape.width) @ w[p + "self_attn.o_proj.weight"].T
        h = _rms(x, w[p + "post_attention_layernorm.weight"])
        gate, up = h @ w[p + "mlp.gate_proj.weight"].T, h @ w[p + "mlp.up_proj.weight"].T
        x = x + (gate / (1 + np.exp(-gate)) * up) @ w[p + "mlp.down_proj.weight"].T
    return np.asarray(_rms(x, w["model.norm.weight"]) @ w["model.embed_tokens.weight"].T)


def write_safetensors(path: Path, tensors: dict[str, Array], dtype: str = "F32") -> None:
    """The safetensors layout PEFT writes (8-byte header length, JSON header, bytes); F32 or BF16."""
    header: dict[str, Any] = {"__metadata__": {"format": "pt"}}
    blobs, offset = [], 0
    for name, value in tensors.items():
        array = np.ascontiguousarray(value, dtype=np.float32)
        raw = (array.view(np.uint32) >> 16).astype(np.uint16).tobytes() if dtype == "BF16" else array.tobytes()
        header[name] = {"dtype": dtype, "shape": list(array.shape), "data_offsets": [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    path.write_bytes(struct.pack("<Q", len(text)) + text + b"".join(blobs))


def write_adapter(
    directory: Path,
    *,
    rank: int = 4,
    alpha: float = 8.0,
    modules: tuple[str, ...] = tuple(TINY.linear()),
    seed: int = 1,
    shape: Shape = TINY,
    config: dict[str, Any] | None = None,
) -> dict[str, tuple[Array, Array]]:
    """A PEFT LoRA adapter with random A and B (B is zero in a fresh adapter; these stand for a trained one), and
    `config` on top of its adapter_config.json. Returns weight name → (A, B)."""
    rng = np.random.default_rng(seed)
    pairs: dict[str, tuple[Array, Array]] = {}
    tensors: dict[str, Array] = {}
    for i in range(shape.blocks):
        for module in modules:
            out, inp = shape.linear()[module]
            a = rng.normal(0, 0.3, (rank, inp)).astype(np.float32)
            b = rng.normal(0, 0.05, (out, rank)).astype(np.float32)
            key = f"model.layers.{i}.{module}"
            pairs[f"{key}.weight"] = (a, b)
            tensors[f"base_model.model.{key}.lora_A.weight"] = a
            tensors[f"base_model.model.{key}.lora_B.weight"] = b
    directory.mkdir(parents=True, exist_ok=True)
    write_safetensors(directory / "adapter_model.safetensors", tensors)
    settings = {"peft_type": "LORA", "r": rank, "lora_alpha": alpha, "init_lora_weights": True, **(config or {})}
    (directory / "adapter_config.json").write_text(json.dumps(settings))
    return pairs


def llama_logits(model: Path, tokens: list[int], lora: Path | None = None) -> npt.NDArray[np.float64]:
    """Logits at every position as llama.cpp computes them (with an f32 KV cache, so only the weights' own
    precision differs from exact arithmetic)."""
    from llama_cpp import Llama  # the `local` extra; tests that call this skip without it

    path = str(lora) if lora else None
    llm = Llama(model_path=str(model), n_ctx=64, logits_all=True, verbose=False, type_k=0, type_v=0, lora_path=path)
    llm.eval(tokens)
    return np.array(llm.scores[: len(tokens)], dtype=np.float64)


def merged(weights: Weights, pairs: dict[str, tuple[Array, Array]], scale: float) -> Weights:
    """What PEFT's merge_and_unload makes: W + scale · B · A for every adapted weight."""
    out = dict(weights)
    for name, (a, b) in pairs.items():
        out[name] = (weights[name] + scale * (b @ a)).astype(np.float32)
    return out
