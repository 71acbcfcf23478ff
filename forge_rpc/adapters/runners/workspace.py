"""A job's directory on disk: the checked dataset split into train/held-out JSONL, the spec the trainer reads,
its output and checkpoints, and the log of everything it printed.

    <jobs_dir>/<job_id>/
        spec.json         what to do (FORGE_JOB_SPEC points here)
        train.jsonl       training examples, checked
        eval.jsonl        held-out examples (given, or carved out with the job's seed)
        output/           what the trainer produces (adapter, merged model, reports)
        checkpoints/      where it checkpoints; `resume_from` names the latest one on a later attempt
        trainer.log       every line it printed, all attempts

The dataset comes from one source: inline examples, a JSONL file, a RAG namespace of the job's owner (each chunk a
{"text"} example), or, with none given, examples extracted from the project directory (domain/extraction.py).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from ...domain.datasets import DatasetError, check_example, read_examples, split_examples
from ...domain.extraction import extract
from ..project_files import locate, read_sources, source_files

__all__ = ["NamespaceReader", "PreparedJob", "Workspace"]

NamespaceReader = Callable[[str, str], Awaitable[list[str] | None]]
"""(job id, namespace name) → the texts of that namespace of the job's owner; None when the owner has no such
namespace (another user's is never read)."""


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


@dataclass(frozen=True, slots=True)
class _Namespace:
    name: str
    texts: list[str]


@dataclass(frozen=True, slots=True)
class _Project:
    root: Path
    files: list[str]


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
    def __init__(self, root: Path, max_example_chars: int, namespace_reader: NamespaceReader | None = None) -> None:
        self.root = root
        self._max_chars = max_example_chars
        self._namespace_reader = namespace_reader

    def job_dir(self, job_id: str) -> Path:
        return self.root / job_id

    async def prepare(
        self, job_id: str, attempt: int, kind: str, config: dict[str, Any], resume_from: str
    ) -> PreparedJob:
        """Checks and writes the dataset and the spec. Raises DatasetError naming the bad line."""
        source = await self._source(job_id, config)
        return await asyncio.to_thread(self._prepare, job_id, attempt, kind, config, resume_from, source)

    async def _source(self, job_id: str, config: dict[str, Any]) -> _Namespace | _Project | None:
        """What the dataset needs from the database or git, fetched here on the loop; None for inline examples
        and files, which the thread reads."""
        dataset = config.get("dataset") or {}
        if dataset.get("examples") or dataset.get("path"):
            return None
        if name := dataset.get("rag_namespace"):
            if self._namespace_reader is None:
                raise DatasetError(0, "training from a RAG namespace is not configured on this server")
            texts = await self._namespace_reader(job_id, name)
            if texts is None:
                raise DatasetError(0, f"RAG namespace {name!r} does not exist (or is not the job owner's)")
            return _Namespace(name, texts)
        raw = str(config.get("project_path") or "")
        if not Path(raw).is_absolute():
            # Only a directory resolved (and access-checked) when the job was created is read: a relative one
            # would be taken from wherever this worker happens to run.
            raise DatasetError(0, "no dataset given, and the job records no project directory to extract one from")
        located = await locate(raw)
        if not located.is_dir:
            raise DatasetError(0, f"no dataset given, and the project directory {located.path} does not exist")
        return _Project(located.path, await source_files(located.path))

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

    def _checked(self, examples: list[dict[str, Any]], where: str) -> list[dict[str, Any]]:
        for i, example in enumerate(examples, start=1):
            problem = check_example(example, self._max_chars)
            if problem is not None:
                raise DatasetError(i, f"{where}{problem}")
        return examples

    def _examples(self, dataset: dict[str, Any], source: _Namespace | _Project | None) -> list[dict[str, Any]]:
        if isinstance(source, _Namespace):
            if not source.texts:
                raise DatasetError(0, f"RAG namespace {source.name!r} has no documents")
            return self._checked([{"text": t} for t in source.texts], f"RAG namespace {source.name!r}: ")
        if isinstance(source, _Project):
            found: list[dict[str, Any]] = extract(read_sources(source.root, source.files), self._max_chars)
            if not found:
                raise DatasetError(
                    0,
                    f"no dataset given, and none could be extracted from {source.root}: its {len(source.files)} "
                    "source files have no Python docstrings or markdown sections",
                )
            return found
        if dataset.get("examples"):
            return self._checked(list(dataset["examples"]), "")
        return self._read(dataset["path"], "dataset")

    def _prepare(
        self,
        job_id: str,
        attempt: int,
        kind: str,
        config: dict[str, Any],
        resume_from: str,
        source: _Namespace | _Project | None,
    ) -> PreparedJob:
        job_dir = self.job_dir(job_id)
        out, ckpt = job_dir / "output", job_dir / "checkpoints"
        for d in (job_dir, out, ckpt):
            d.mkdir(parents=True, exist_ok=True)
        dataset = dict(config.get("dataset") or {})
        examples = self._examples(dataset, source)
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
