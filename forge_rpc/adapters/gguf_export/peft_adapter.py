"""A PEFT LoRA adapter directory (`adapter_config.json` + `adapter_model.safetensors`) as numpy pairs: each
targeted base weight with its A (rank × in) and B (out × rank) and the scale PEFT applies to B·A."""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from ...domain import FailedPrecondition
from .safetensors import read_safetensors

__all__ = ["LoraAdapter", "LoraPair", "load_adapter"]

Matrix = npt.NDArray[np.float32]

# Initialisations that leave the base weights as they are. PiSSA, OLoRA, CorDA and LoftQ rewrite the base (its
# residual is what the adapter applies to), so their adapters fit the original base only once converted to plain
# LoRA on save, which also resets this field to true.
_PLAIN_INITS = (True, False, "gaussian", "eva", "orthogonal")


@dataclass(frozen=True, slots=True)
class LoraPair:
    target: str
    """The Hugging Face name of the adapted weight, e.g. `model.layers.0.self_attn.q_proj.weight`."""
    a: Matrix
    b: Matrix
    scale: float
    """What PEFT multiplies B·A by: alpha / rank (alpha / √rank with rsLoRA)."""

    @property
    def rank(self) -> int:
        return int(self.a.shape[0])


@dataclass(frozen=True, slots=True)
class LoraAdapter:
    pairs: tuple[LoraPair, ...]
    base_model: str
    """`base_model_name_or_path` as PEFT recorded it."""


def _bad(why: str) -> Exception:
    return FailedPrecondition(why, "ADAPTER_INVALID")


def _config(directory: Path) -> dict[str, Any]:
    path = directory / "adapter_config.json"
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except OSError:  # missing, or the trainer's artifact is a file and not an adapter directory
        raise _bad(f"{directory} holds no PEFT adapter (no adapter_config.json)") from None
    except ValueError as exc:
        raise _bad(f"{path} is not JSON: {exc}") from None
    if not isinstance(config, dict):
        raise _bad(f"{path} is not a JSON object")
    kind = str(config.get("peft_type", "LORA")).upper()
    if kind != "LORA":
        raise _bad(f"the adapter is {kind}; only LoRA adapters convert to GGUF")
    if config.get("use_dora"):
        raise _bad("DoRA adapters have no GGUF form; train without use_dora or deploy elsewhere")
    init = config.get("init_lora_weights", True)
    if init not in _PLAIN_INITS:
        raise _bad(
            f"the adapter was initialised with {init!r}, which changes the base weights; save it converted to plain "
            "LoRA (PEFT's path_initial_model_for_weight_conversion) to deploy it"
        )
    return config


def _alpha(config: dict[str, Any], module: str) -> float:
    # PEFT's own matching: a pattern key names a module by its trailing dotted path.
    for key, alpha in (config.get("alpha_pattern") or {}).items():
        if re.fullmatch(rf"(.*\.)?({key})", module):
            return float(alpha)
    return float(config.get("lora_alpha") or config.get("r") or 8)


def _target(name: str) -> tuple[str, str] | None:
    """(base weight name, "a" | "b") of a saved LoRA tensor; None for anything else."""
    for marker, which in ((".lora_A.weight", "a"), (".lora_B.weight", "b")):
        if name.endswith(marker):
            return name.removeprefix("base_model.model.").removesuffix(marker) + ".weight", which
    return None


def load_adapter(directory: Path) -> LoraAdapter:
    config = _config(directory)
    weights = directory / "adapter_model.safetensors"
    if not weights.is_file():
        raise _bad(f"{directory} has no adapter_model.safetensors (only the safetensors format is read)")
    halves: dict[str, dict[str, Matrix]] = {}
    for name, array in read_safetensors(weights).items():
        found = _target(name)
        if found is None:
            raise _bad(
                f"the adapter carries {name}, which is not a LoRA matrix (modules_to_save or embedding changes "
                "have no GGUF adapter form)"
            )
        halves.setdefault(found[0], {})[found[1]] = array
    pairs = []
    for target, half in sorted(halves.items()):
        a, b = half.get("a"), half.get("b")
        if a is None or b is None or a.ndim != 2 or b.ndim != 2 or a.shape[0] != b.shape[1]:
            raise _bad(f"{target}: lora_A and lora_B are missing or do not fit each other")
        rank = int(a.shape[0])
        alpha = _alpha(config, target.removesuffix(".weight"))
        scale = alpha / (math.sqrt(rank) if config.get("use_rslora") else rank)
        pairs.append(LoraPair(target, a, b, scale))
    if not pairs:
        raise _bad(f"{weights} holds no LoRA matrices")
    return LoraAdapter(tuple(pairs), str(config.get("base_model_name_or_path") or ""))
