"""A job's directory on disk: the checked dataset split into train/held-out JSONL, the spec the trainer reads,
its output and checkpoints, and the log of everything it printed.

    <jobs_dir>/<job_id>/
        spec.json         what to do (FORGE_JOB_SPEC points here)
        train.jsonl       training examples, checked
        eval.jsonl        held-out examples (given, or carved out with the job's seed)
        output/           what the trainer produces (adapter, merged model, reports)
        checkpoints/      where it checkpoints; `resume_from` names the latest one on a later attempt
        trainer.log       every line it printed, all attempts
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from ...domain.datasets import DatasetError, check_example, read_examples, split_examples

__all__ = ["PreparedJob", "Workspace"]


@dataclass(frozen=True, slots=True)
class PreparedJob:
    job_dir: Path
    spec_path: Path
    train_path: Path
    eval_path: Path
    output_dir: Path
    checkpoint_dir: Path
    log_path: Path
    train_examples: int
    eval_examples: int


def _lines(path: Path) -> Iterator[str]:
    with path.open(encoding="utf-8", errors="strict") as f:
        yield from f


def _write_jsonl(path: Path, examples: list[dict[str, Any]]) -> None:
    tmp = path.with_suffix(".tmp")
    with tmp.open("w", encoding="utf-8") as f:
        for example in examples:
            f.write(json.dumps(example, ensure_ascii=False) + "\n")
    tmp.replace(path)


class Workspace:
    def __init__(self, root: Path, max_example_chars: int) -> None:
        self.root = root
        self._max_chars = max_example_chars

    def job_dir(self, job_id: str) -> Path:
        return self.root / job_id

    async def prepare(
        self, job_id: str, attempt: int, kind: str, config: dict[str, Any], resume_from: str
    ) -> PreparedJob:
        """Checks and writes the dataset and the spec. Raises DatasetError naming the bad line."""
        return await asyncio.to_thread(self._prepare, job_id, attempt, kind, config, resume_from)

    def _read(self, path_text: str, what: str) -> list[dict[str, Any]]:
        path = Path(path_text).expanduser()
        if not path.is_file():
            raise DatasetError(0, f"{what} {path} does not exist or is not a file")
        try:
            return read_examples(_lines(path), self._max_chars)
        except UnicodeDecodeError as exc:
            raise DatasetError(0, f"{what} {path} is not UTF-8 text ({exc.reason})") from None
        except DatasetError as exc:
            raise DatasetError(exc.line, f"{what} {path}: {exc.problem}") from None

    def _examples(self, dataset: dict[str, Any]) -> list[dict[str, Any]]:
        if dataset.get("examples"):
            for i, example in enumerate(dataset["examples"], start=1):
                problem = check_example(example, self._max_chars)
                if problem is not None:
                    raise DatasetError(i, problem)
            return list(dataset["examples"])
        if dataset.get("path"):
            return self._read(dataset["path"], "dataset")
        if dataset.get("rag_namespace"):
            raise DatasetError(0, "training from a RAG namespace is not available in this release")
        raise DatasetError(0, "no dataset given: set dataset.examples or dataset.path")

    def _prepare(self, job_id: str, attempt: int, kind: str, config: dict[str, Any], resume_from: str) -> PreparedJob:
        job_dir = self.job_dir(job_id)
        out, ckpt = job_dir / "output", job_dir / "checkpoints"
        for d in (job_dir, out, ckpt):
            d.mkdir(parents=True, exist_ok=True)
        dataset = dict(config.get("dataset") or {})
        examples = self._examples(dataset)
        seed = int(config.get("seed", 42))
        if dataset.get("eval_path"):
            train, _ = split_examples(examples, 0.0, seed, int(dataset.get("max_examples", 0)))
            held = self._read(dataset["eval_path"], "eval dataset")
        else:
            fraction = float(dataset.get("eval_fraction", 0.1))
            train, held = split_examples(examples, fraction, seed, int(dataset.get("max_examples", 0)))
        train_path, eval_path = job_dir / "train.jsonl", job_dir / "eval.jsonl"
        _write_jsonl(train_path, train)
        _write_jsonl(eval_path, held)
        log_path = job_dir / "trainer.log"
        prepared = PreparedJob(
            job_dir, job_dir / "spec.json", train_path, eval_path, out, ckpt, log_path, len(train), len(held)
        )
        shown = {**config, "dataset": {k: v for k, v in dataset.items() if k != "examples"}}
        spec = {
            "job_id": job_id,
            "attempt": attempt,
            "kind": kind,
            "base_model": config.get("base_model", ""),
            "config": shown,
            "train_path": str(train_path),
            "eval_path": str(eval_path),
            "train_examples": len(train),
            "eval_examples": len(held),
            "output_dir": str(out),
            "checkpoint_dir": str(ckpt),
            "resume_from": resume_from,
            "log_path": str(log_path),
        }
        prepared.spec_path.write_text(json.dumps(spec, indent=2, ensure_ascii=False), encoding="utf-8")
        return prepared

    async def write_report(self, job_id: str, name: str, text: str) -> Path:
        """Writes a file into the job's output directory (atomically); returns its path."""

        def write() -> Path:
            out = self.job_dir(job_id) / "output"
            out.mkdir(parents=True, exist_ok=True)
            path, tmp = out / name, out / f".{name}.tmp"
            tmp.write_text(text, encoding="utf-8")
            tmp.replace(path)
            return path

        return await asyncio.to_thread(write)

    @staticmethod
    def open_log(prepared: PreparedJob, attempt: int) -> TextIO:
        log = prepared.log_path.open("a", encoding="utf-8")
        log.write(f"--- attempt {attempt} ---\n")
        return log
