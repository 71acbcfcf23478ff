"""A trainer that speaks forge's progress protocol and leaves a real PEFT LoRA adapter (adapter_config.json +
adapter_model.safetensors) for the tiny llama of tiny_llama.py — random matrices standing for trained ones — so a
deployment has something real to convert. Seeded by the job's `seed`; rank and alpha from its config.

Test switch (the job's `project_name`): "unconverted-pissa" leaves a PiSSA adapter as PEFT saves one when it is
not converted to plain LoRA.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from tests.training.workers.tiny_llama import write_adapter


def emit(**record: object) -> None:
    print(json.dumps(record), flush=True)


def main() -> int:
    spec = json.loads(Path(sys.argv[-1]).read_text())
    config = spec["config"]
    emit(state="training", total_steps=2, total_epochs=1)
    for step in (1, 2):
        emit(step=step, epoch=1, loss=round(1.0 / step, 3))
    emit(state="evaluating")
    emit(eval_loss=0.5, metrics={"perplexity": 1.6487, "base_perplexity": 40.0, "eval_tokens": 12})
    adapter = Path(spec["output_dir"]) / "adapter"
    extra: dict[str, object] = {}
    if config.get("project_name") == "unconverted-pissa":
        extra["init_lora_weights"] = "pissa_niter_4"
    rank = int(config.get("lora_rank") or 4)
    write_adapter(
        adapter, rank=rank, alpha=float(config.get("lora_alpha") or 2 * rank), seed=int(config["seed"]), config=extra
    )
    emit(artifact=str(adapter), kind="adapter")
    return 0


if __name__ == "__main__":
    sys.exit(main())
