"""Validating a trained job from the numbers its trainer measured (on the job's held-out split, or re-evaluated on
another file): the pass rule and the markdown report.

Perplexity is exp(mean NLL per predicted token) over the held-out split — the trainer sums the negative
log-likelihood over every predicted token and divides by their count, so long and short examples weigh by their
tokens, not per example.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime

__all__ = ["Measured", "judge", "report_markdown"]


@dataclass(frozen=True, slots=True)
class Measured:
    final_loss: float | None
    eval_loss: float | None
    perplexity: float | None
    base_perplexity: float | None
    eval_tokens: int
    eval_examples: int

    @staticmethod
    def from_status(status: dict[str, object]) -> Measured:
        metrics = status.get("metrics") or {}
        assert isinstance(metrics, dict)

        def num(value: object) -> float | None:
            return float(value) if isinstance(value, int | float) and math.isfinite(value) else None

        eval_loss = num(status.get("eval_loss"))
        perplexity = num(metrics.get("perplexity"))
        if perplexity is None and eval_loss is not None:
            perplexity = math.exp(eval_loss)
        return Measured(
            final_loss=num(status.get("loss")),
            eval_loss=eval_loss,
            perplexity=perplexity,
            base_perplexity=num(metrics.get("base_perplexity")),
            eval_tokens=int(num(metrics.get("eval_tokens")) or 0),
            eval_examples=int(num(metrics.get("eval_examples")) or 0),
        )


def judge(m: Measured, max_perplexity: float | None) -> tuple[bool, str]:
    """(passed, why): perplexity at most `max_perplexity`, or without one, below the base model's."""
    if m.perplexity is None:
        return False, "the trainer reported no held-out loss, so there is no perplexity to judge"
    if max_perplexity is not None:
        ok = m.perplexity <= max_perplexity
        return ok, f"perplexity {m.perplexity:.3f} {'≤' if ok else '>'} the threshold {max_perplexity:.3f}"
    if m.base_perplexity is None:
        return False, "no threshold given and the base model's perplexity is unknown"
    ok = m.perplexity < m.base_perplexity
    return ok, f"perplexity {m.perplexity:.3f} {'<' if ok else '≥'} the base model's {m.base_perplexity:.3f}"


def _fmt(value: float | None) -> str:
    return "—" if value is None else f"{value:.4f}"


def report_markdown(
    job_id: str, base_model: str, m: Measured, passed: bool, why: str, at: datetime, dataset: str = ""
) -> str:
    """`dataset` is the held-out file the job was re-evaluated on; empty when the numbers are its trainer's."""
    held_out = f"`{dataset}` (re-evaluated)" if dataset else "the job's own held-out split"
    lines = [
        f"# Validation of {job_id}",
        "",
        f"- Base model: `{base_model}`",
        f"- Held-out data: {held_out}",
        f"- Validated: {at.isoformat(timespec='seconds')}",
        f"- Result: **{'passed' if passed else 'failed'}** — {why}",
        "",
        "| metric | value |",
        "|---|---|",
        f"| final training loss | {_fmt(m.final_loss)} |",
        f"| held-out loss (per token) | {_fmt(m.eval_loss)} |",
        f"| held-out perplexity | {_fmt(m.perplexity)} |",
        f"| base model perplexity | {_fmt(m.base_perplexity)} |",
        f"| held-out tokens | {m.eval_tokens} |",
        f"| held-out examples | {m.eval_examples or '—'} |",
        "",
        "Perplexity is exp(sum of negative log-likelihood over the predicted held-out tokens / their number).",
        "",
    ]
    return "\n".join(lines)
