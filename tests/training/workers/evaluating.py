"""A trainer that also speaks evaluate mode (ValidateJob on another file), without a model: training is
scripted.py's; evaluating "measures" a held-out file deterministically, so a test knows what to expect.

The measure: every whitespace-separated word of an example (its message contents, prompt and completion, or
text, lowercased) is a predicted token. The "trained" model's negative log-likelihood is KNOWN_NLL for a word of
the job's own dataset (train.jsonl and eval.jsonl) and UNKNOWN_NLL otherwise; the base model's is BASE_NLL for
every word. eval_loss is the mean over tokens, perplexity its exp. `eval_examples` is not reported (forge counts
the file's examples itself).

Switches (the job's `project_name`): "no-evaluate" prints an error record and exits 2, as a trainer without the
mode would; "crash-evaluate" prints a line and exits 3 with no record; "slow-evaluate" writes "<pid> <child pid>"
to <output_dir>/evaluate.pids, starts a child that would sleep for minutes, and never finishes.
"""

from __future__ import annotations

import json
import math
import os
import runpy
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

KNOWN_NLL = 0.1
UNKNOWN_NLL = 4.0
BASE_NLL = 3.0


def words(example: dict[str, Any]) -> list[str]:
    if "messages" in example:
        text = " ".join(m["content"] for m in example["messages"])
    else:
        text = " ".join(str(example.get(k, "")) for k in ("prompt", "completion", "text"))
    return text.lower().split()


def read(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def emit(**record: object) -> None:
    print(json.dumps(record), flush=True)


def evaluate(spec: dict[str, Any]) -> int:
    assert os.environ["FORGE_JOB_SPEC"] == sys.argv[-1] and os.environ["FORGE_MODE"] == "evaluate"
    project = str(spec["config"].get("project_name", ""))
    if project == "no-evaluate":
        emit(error="this trainer has no evaluate mode")
        return 2
    if project == "crash-evaluate":
        print("Traceback: evaluation exploded", flush=True)
        return 3
    output = Path(spec["output_dir"])
    if project == "slow-evaluate":
        child = subprocess.Popen(["sleep", "300"])
        (output / "evaluate.pids").write_text(f"{os.getpid()} {child.pid}")
        time.sleep(300)
    job_dir = output.parent
    vocabulary = {w for name in ("train.jsonl", "eval.jsonl") for row in read(job_dir / name) for w in words(row)}
    tokens = [w for row in read(Path(spec["eval_path"])) for w in words(row)]
    nll = sum(KNOWN_NLL if w in vocabulary else UNKNOWN_NLL for w in tokens)
    emit(state="evaluating", message=f"measuring {len(tokens)} tokens with {spec['adapter_path']}")
    eval_loss = nll / len(tokens)
    emit(
        eval_loss=eval_loss,
        metrics={"perplexity": math.exp(eval_loss), "base_perplexity": math.exp(BASE_NLL), "eval_tokens": len(tokens)},
    )
    return 0


def main() -> int:
    spec = json.loads(Path(sys.argv[-1]).read_text())
    if spec.get("mode") == "evaluate":
        return evaluate(spec)
    runpy.run_path(str(Path(__file__).with_name("scripted.py")), run_name="__main__")  # exits with its status
    return 0


if __name__ == "__main__":
    sys.exit(main())
