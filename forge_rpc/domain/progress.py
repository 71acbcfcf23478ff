"""The progress protocol a trainer speaks: one JSON object per output line; every other line is log text.

Keys (all optional; see docs/training-worker-protocol.md):
    state        "preparing" | "training" | "evaluating"
    step, total_steps, epoch, total_epochs   whole numbers
    loss, eval_loss, progress (0–100)        numbers
    checkpoint   path of a checkpoint just written (pause and retries resume from the latest)
    artifact     path of a file produced; `kind` says what: "adapter", "model", "report"…
    error        why the run failed (the job fails when the process ends)
    message      a human-readable note
    metrics      {name: number}; any other numeric top-level key is a metric too

`ProgressTracker` folds records into the job's status and the events to log, and estimates the time left.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from typing import Any

from .jobs import WORKER_STATES, EventType, JobEvent, JobState

__all__ = ["ProgressRecord", "ProgressTracker", "parse_line"]

_KNOWN = frozenset(
    {
        "state", "step", "total_steps", "epoch", "total_epochs", "loss", "eval_loss", "progress",
        "checkpoint", "artifact", "kind", "error", "message", "metrics",
    }
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class ProgressRecord:
    data: dict[str, Any]
    """The object as printed."""

    def number(self, key: str) -> float | None:
        value = self.data.get(key)
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            return None
        return float(value)

    def whole(self, key: str) -> int | None:
        value = self.number(key)
        return None if value is None else int(value)

    def text(self, key: str) -> str:
        value = self.data.get(key)
        return value if isinstance(value, str) else ""


def parse_line(line: str) -> ProgressRecord | None:
    """The record a line carries, or None for log text (including JSON that names no protocol key)."""
    text = line.strip()
    if not (text.startswith("{") and text.endswith("}")):
        return None
    try:
        data = json.loads(text)
    except ValueError:
        return None
    if not isinstance(data, dict) or (not _KNOWN.intersection(data) and not _numeric_extras(data)):
        return None
    return ProgressRecord(data)


def _numeric_extras(data: dict[str, Any]) -> dict[str, float]:
    return {
        k: float(v)
        for k, v in data.items()
        if k not in _KNOWN and isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
    }


@dataclass(slots=True)
class ProgressTracker:
    """One attempt's view of a job: the state and status so far, and the step rate since the attempt began."""

    state: JobState
    status: dict[str, Any] = field(default_factory=dict)
    progress: float = 0.0
    error: str = ""
    message: str = ""
    _t0: float | None = None
    _step0: int = 0
    _progress0: float = 0.0
    clock: Any = time.monotonic

    def apply(self, record: ProgressRecord) -> list[JobEvent]:
        """Folds one record in; returns the events it makes, in order."""
        d, s = record.data, self.status
        events: list[JobEvent] = []
        wanted = record.text("state")
        if wanted in WORKER_STATES and wanted != self.state and self.state is not JobState.CANCELLING:
            self.state = JobState(wanted)
            events.append(JobEvent(EventType.STATE, self.state, f"trainer: {wanted}", self.progress, data=d))
        for key in ("step", "total_steps", "epoch", "total_epochs"):
            value = record.whole(key)
            if value is not None and value >= 0:
                s[key] = value
        for key in ("loss", "eval_loss"):
            number = record.number(key)
            if number is not None:
                s[key] = number
        metrics = {**_numeric_extras(d), **_metric_map(d.get("metrics"))}
        if metrics:
            s["metrics"] = {**s.get("metrics", {}), **metrics}
        said = record.text("message")
        if said:
            self.message = said
        self._advance(record)
        # A checkpoint or artifact record that names its step is not progress of its own.
        marker = "checkpoint" in d or "artifact" in d
        numbers = any(k in d for k in ("loss", "eval_loss", "progress")) or (
            not marker and any(k in d for k in ("step", "epoch"))
        )
        if numbers:
            events.append(self._event(EventType.PROGRESS, said or self._where(), d))
        checkpoint = record.text("checkpoint") or (
            record.text("artifact") if record.text("kind") == "checkpoint" else ""
        )
        if checkpoint:
            s.setdefault("artifacts", {})["checkpoint_path"] = checkpoint
            events.append(self._event(EventType.CHECKPOINT, f"checkpoint {checkpoint}", d, checkpoint))
        artifact = record.text("artifact")
        if artifact and artifact != checkpoint:
            kind = record.text("kind") or "artifact"
            if kind in ("adapter", "model"):
                s.setdefault("artifacts", {})[f"{kind}_path"] = artifact
            s.setdefault("artifacts", {}).setdefault("files", {})[kind] = artifact
            events.append(self._event(EventType.ARTIFACT, f"{kind}: {artifact}", d, artifact))
        if record.text("error"):
            self.error = record.text("error")
            events.append(self._event(EventType.ERROR, self.error, d))
        return events

    def _where(self) -> str:
        s = self.status
        total = f"/{s['total_steps']}" if s.get("total_steps") else ""
        loss = f", loss {s['loss']:.4g}" if "loss" in s else ""
        return f"step {s.get('step', 0)}{total}{loss}"

    def _event(self, kind: EventType, message: str, data: dict[str, Any], artifact: str = "") -> JobEvent:
        s = self.status
        return JobEvent(
            kind,
            self.state,
            message,
            self.progress,
            int(s.get("epoch", 0)),
            int(s.get("step", 0)),
            s.get("loss"),
            s.get("eval_loss"),
            artifact,
            data,
        )

    def _advance(self, record: ProgressRecord) -> None:
        s = self.status
        explicit = record.number("progress")
        if explicit is not None:
            self.progress = min(100.0, max(0.0, explicit))
        elif s.get("total_steps"):
            self.progress = min(100.0, 100.0 * s.get("step", 0) / s["total_steps"])
        now = self.clock()
        step = int(s.get("step", 0))
        if self._t0 is None:
            # The rate counts from the first step reported: loading a model is not training speed.
            if "step" in record.data or "progress" in record.data:
                self._t0, self._step0, self._progress0 = now, step, self.progress
            return
        elapsed = now - self._t0
        total = s.get("total_steps")
        if total and step > self._step0:
            s["eta_sec"] = round((total - step) * elapsed / (step - self._step0))
            s.setdefault("metrics", {})["steps_per_sec"] = round((step - self._step0) / elapsed, 4) if elapsed else 0
        elif self.progress > self._progress0:
            s["eta_sec"] = round((100.0 - self.progress) * elapsed / (self.progress - self._progress0))


def _metric_map(raw: Any) -> dict[str, float]:
    if not isinstance(raw, dict):
        return {}
    return {
        str(k): float(v)
        for k, v in raw.items()
        if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
    }
