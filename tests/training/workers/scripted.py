"""A small trainer that speaks forge's progress protocol for real — a pluggable worker command like an Unsloth or
TRL script would be, only without the model: it reads the spec and dataset forge wrote, "trains" for
`max_steps` steps (a falling loss, `FORGE_TEST_STEP_S` seconds each), checkpoints every `save_steps`, resumes
from `resume_from`, evaluates, writes an adapter file and exits 0.

Test switches (the job's `project_name`): "fail-at-N" reports an error at step N and exits 1. Environment:
FORGE_TEST_RUNS_FILE gets "start|end <job> <attempt> <pid>" lines; FORGE_TEST_SPAWN_CHILD=1 starts a child that
would sleep for minutes (to show the whole process group is stopped).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path


def emit(**record: object) -> None:
    print(json.dumps(record), flush=True)


def note(runs: str, what: str, spec: dict[str, object]) -> None:
    if runs:
        with open(runs, "a", encoding="utf-8") as f:
            f.write(f"{what} {spec['job_id']} {spec['attempt']} {os.getpid()} {time.time():.3f}\n")


def main() -> int:
    spec = json.loads(Path(sys.argv[-1]).read_text())
    assert os.environ["FORGE_JOB_SPEC"] == sys.argv[-1]
    config = spec["config"]
    runs = os.environ.get("FORGE_TEST_RUNS_FILE", "")
    note(runs, "start", spec)
    print(f"worker pid {os.getpid()}", flush=True)
    if os.environ.get("FORGE_TEST_SPAWN_CHILD") == "1":
        child = subprocess.Popen(["sleep", "300"])
        print(f"child pid {child.pid}", flush=True)
    emit(state="preparing", message="reading the dataset")
    examples = [json.loads(line) for line in Path(spec["train_path"]).read_text().splitlines() if line.strip()]
    print(f"{len(examples)} training examples, {spec['eval_examples']} held out", flush=True)
    total = int(config.get("max_steps") or 10)
    save = int(config.get("save_steps") or 5)
    delay = float(os.environ.get("FORGE_TEST_STEP_S", "0.05"))
    project = str(config.get("project_name", ""))
    fail_at = int(project.removeprefix("fail-at-")) if project.startswith("fail-at-") else -1
    start = 0
    if spec["resume_from"]:
        start = json.loads(Path(spec["resume_from"]).read_text())["step"]
        print(f"resuming from step {start}", flush=True)
    emit(state="training", total_steps=total, total_epochs=1)
    for step in range(start + 1, total + 1):
        time.sleep(delay)
        if step == fail_at:
            emit(error=f"loss diverged at step {step}")
            return 1
        emit(step=step, epoch=1, loss=round(2.0 / step, 4), learning_rate=0.0002)
        if step % save == 0 and step < total:
            path = Path(spec["checkpoint_dir"]) / f"step-{step}.json"
            path.write_text(json.dumps({"step": step}))
            emit(checkpoint=str(path), step=step)
    emit(state="evaluating")
    emit(eval_loss=0.5, progress=100, metrics={"perplexity": 1.6487, "base_perplexity": 40.0, "eval_tokens": 120})
    adapter = Path(spec["output_dir"]) / "adapter.json"
    adapter.write_text(json.dumps({"job": spec["job_id"], "steps": total}))
    emit(artifact=str(adapter), kind="adapter")
    note(runs, "end", spec)
    return 0


if __name__ == "__main__":
    sys.exit(main())
