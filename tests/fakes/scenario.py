"""Per-request behaviour options for the fake upstream, carried in the model name.

The model string is the one field that every client (openai SDK, litellm, the
ollama client, forge's own adapter) forwards unchanged, so encoding the
behaviour there lets a test steer the fake through any stack, concurrently,
without a side channel: ``BASE`` or ``BASE@opt=v&opt=v``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final
from urllib.parse import parse_qsl, urlencode

SEPARATOR: Final = "@"

# Option name -> parser. Kept as data so validation of model-name options and
# of /_control/defaults shares one definition.
_INT_OPTIONS: Final = frozenset({"tokens", "fail", "cut_after", "malformed_after", "fail_times", "context_window"})
_MS_OPTIONS: Final = frozenset({"ttft_ms", "gap_ms", "stall_ms", "retry_after"})
_STR_OPTIONS: Final = frozenset({"tag", "tool_call"})
SCENARIO_OPTIONS: Final = _INT_OPTIONS | _MS_OPTIONS | _STR_OPTIONS
# Server-wide knobs that only make sense as defaults (Ollama model names
# cannot carry them: a pull names a real model, not a scenario).
SERVER_OPTIONS: Final = frozenset({"pull_steps", "pull_gap_ms"})


class ScenarioError(ValueError):
    """An option the fake does not understand; wires turn it into HTTP 400.

    Failing loudly beats silently ignoring a typo such as ``ttft=300``, which
    would make a latency test pass for the wrong reason.
    """


@dataclass(frozen=True, slots=True)
class Scenario:
    """How the fake should behave for one request."""

    base: str
    tokens: int = 8
    ttft_ms: float = 0.0
    gap_ms: float = 0.0
    stall_ms: float = 0.0
    fail: int | None = None
    retry_after: float | None = None
    cut_after: int | None = None
    malformed_after: int | None = None
    tag: str | None = None
    tool_call: str | None = None
    #: Only the first N requests with this exact model string fail (with ``fail``); later ones succeed.
    fail_times: int | None = None
    #: Prompts longer than this many words get OpenAI's 400 ``context_length_exceeded``.
    context_window: int | None = None

    def model_name(self) -> str:
        """The model string that reproduces this scenario (inverse of parse)."""
        opts: dict[str, object] = {}
        for name in sorted(SCENARIO_OPTIONS):
            value = getattr(self, name)
            if value != getattr(_DEFAULT, name):
                opts[name] = value
        return fake_model(self.base, **opts)


_DEFAULT: Final = Scenario(base="")


def fake_model(base: str, **options: object) -> str:
    """Build ``BASE@opt=v&...``; values are percent-encoded so '@'/'&' survive."""
    unknown = set(options) - SCENARIO_OPTIONS
    if unknown:
        raise ScenarioError(f"unknown fake option(s): {sorted(unknown)}")
    if not options:
        return base
    return f"{base}{SEPARATOR}{urlencode({k: _fmt(v) for k, v in options.items()})}"


def _fmt(value: object) -> str:
    # Avoid "20.0" for floats so the model string stays readable in logs.
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def split_model(model: str) -> tuple[str, str | None]:
    """Return (base, raw option query or None).

    rpartition + the '=' check keep names that legitimately contain '@'
    (e.g. Vertex-style ``claude@20240229``) working when they carry no options.
    """
    base, sep, query = model.rpartition(SEPARATOR)
    if not sep or "=" not in query:
        return model, None
    return base, query


def parse_model(model: str, defaults: Mapping[str, str] | None = None) -> Scenario:
    """Parse a model string; per-key ``defaults`` fill options the name omits."""
    base, query = split_model(model)
    raw: dict[str, str] = {k: v for k, v in (defaults or {}).items() if k in SCENARIO_OPTIONS}
    if query is not None:
        try:
            pairs = parse_qsl(query, keep_blank_values=True, strict_parsing=True)
        except ValueError as exc:
            raise ScenarioError(f"bad fake options {query!r}: {exc}") from None
        for key, value in pairs:
            if key not in SCENARIO_OPTIONS:
                raise ScenarioError(f"unknown fake option {key!r} in {model!r}")
            raw[key] = value
    values: dict[str, object] = {k: _coerce(k, v) for k, v in raw.items()}
    fail = values.get("fail")
    if isinstance(fail, int) and not 400 <= fail <= 599:
        raise ScenarioError(f"fail must be an HTTP error status, got {fail}")
    if values.get("fail_times") is not None and fail is None:
        raise ScenarioError("fail_times needs fail (the status the first requests get)")
    return Scenario(base=base, **values)  # type: ignore[arg-type]


def _coerce(key: str, value: str) -> object:
    try:
        if key in _INT_OPTIONS or key == "pull_steps":
            number: float = int(value)
        elif key in _MS_OPTIONS or key == "pull_gap_ms":
            number = float(value)
        else:
            return value
    except ValueError:
        raise ScenarioError(f"fake option {key}={value!r} is not a number") from None
    if number < 0:
        raise ScenarioError(f"fake option {key}={value!r} must be >= 0")
    return number


def validate_defaults(raw: Mapping[str, object]) -> dict[str, str]:
    """Check a /_control/defaults body and normalise values to strings.

    Stored as strings so defaults and model-name options go through the same
    coercion path in :func:`parse_model`.
    """
    out: dict[str, str] = {}
    for key, value in raw.items():
        if key not in SCENARIO_OPTIONS | SERVER_OPTIONS:
            raise ScenarioError(f"unknown fake option {key!r}")
        if value is None:
            continue
        text = _fmt(value)
        _coerce(key, text)
        out[key] = text
    parse_model("x", out)  # cross-field checks (e.g. fail range)
    return out


# Module constants rather than ``cls.steps``: with slots=True the class
# attribute is a member descriptor, not the default value.
_PULL_STEPS: Final = 5
_PULL_GAP_MS: Final = 20.0


@dataclass(frozen=True, slots=True)
class PullPacing:
    """How a fake Ollama pull is paced (server-wide, from the defaults)."""

    steps: int = _PULL_STEPS
    gap_ms: float = _PULL_GAP_MS

    @classmethod
    def from_defaults(cls, defaults: Mapping[str, str]) -> PullPacing:
        steps = defaults.get("pull_steps")
        gap = defaults.get("pull_gap_ms")
        return cls(
            steps=max(1, int(steps)) if steps is not None else _PULL_STEPS,
            gap_ms=float(gap) if gap is not None else _PULL_GAP_MS,
        )
