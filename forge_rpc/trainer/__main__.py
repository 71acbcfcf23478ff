"""`python -m forge_rpc.trainer SPEC`: the default worker command of a fine-tuning job (lora.py), and of
ValidateJob's re-evaluation on another file (the same command, given a spec in evaluate mode).

It needs the optional `train` extra (torch, transformers, peft). Without it, it says so in the protocol's own
terms, so the job fails with that message instead of a traceback. Any trainer that speaks the protocol can be
configured instead (`training.worker_command`, docs/training-worker-protocol.md).
"""

from __future__ import annotations

import importlib.util
import json
import sys


def main(argv: list[str]) -> int:
    missing = [m for m in ("torch", "transformers", "peft") if importlib.util.find_spec(m) is None]
    if missing:
        message = (
            f"the built-in LoRA trainer needs {', '.join(missing)}: install forge's `train` extra, or set "
            "training.worker_command (FORGE_TRAINING_COMMAND) to a trainer of your own "
            "(docs/training-worker-protocol.md)"
        )
        print(json.dumps({"error": message}), flush=True)
        return 2
    from .lora import run  # only now: importing torch takes seconds and the extra may be absent

    return run(argv)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
