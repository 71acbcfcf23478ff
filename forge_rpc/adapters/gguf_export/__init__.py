"""A trained PEFT LoRA adapter → GGUF (an adapter file for the base GGUF, or a merged model), for Ollama and
llama.cpp. numpy and the `gguf` package only: it runs in forge's process (in a thread), no torch needed."""

from .base_models import resolve_base_gguf
from .peft_adapter import LoraAdapter, LoraPair, load_adapter
from .writer import QUANTIZATIONS, export_adapter, export_merged

__all__ = [
    "QUANTIZATIONS",
    "LoraAdapter",
    "LoraPair",
    "export_adapter",
    "export_merged",
    "load_adapter",
    "resolve_base_gguf",
]
