"""Rate limits and budgets as pure arithmetic: which limits apply to a call, what the call reserves, and the
bucket math that both limiter backends (in process, and the Redis script shared by replicas) implement alike.

- **Subjects.** A call is limited as its caller — the user (`user:<id>`) when it has one, else its client
  address (`ip:<addr>`: anonymous callers, and every caller when auth is off) — plus the API key that
  authenticated it (`key:<id>`) and the model it names (`model:<configured name or pattern>`). Each subject has
  `Rates`: defaults by kind of caller, overridden field by field by the principal's own `Quota`.
- **Reservation.** Admission reserves, atomically across all subjects: 1 request; the call's tokens (prompt
  estimate + its completion allowance); a stream slot; its estimated spend. After the call the tokens and spend
  are settled to what the servicer reported, and the stream slot is released.
- **Requests and tokens per minute** are leaky buckets: a subject may burst its whole per-minute allowance at
  once, and the allowance comes back continuously (`limit` units per 60 s). This is what OpenAI's
  `x-ratelimit-reset-*` headers describe ("time until the limit is fully replenished"). Levels are integers
  scaled by the window (a unit costs `WINDOW_MS`, the bucket drains `limit` per millisecond), so no rounding can
  let an extra request through or refuse the N-th one, in Python as in Lua's doubles (all values < 2^53).
- **Budgets** (spend in nano-USD, and token quotas) count per `BudgetPeriod`: the calendar month in UTC by
  default, as the usage section's monthly token quota is reported.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Protocol

from .identity import Principal, Quota

__all__ = [
    "BUDGETS",
    "NANO_USD",
    "SETTLED",
    "WINDOW_MS",
    "BudgetPeriod",
    "Check",
    "Demand",
    "Kind",
    "LimitRules",
    "Limiter",
    "Rates",
    "Standing",
    "Subject",
    "Verdict",
    "bucket_admit",
    "bucket_remaining",
    "bucket_reset_ms",
    "bucket_retry_ms",
    "drained",
    "estimate_prompt_tokens",
    "nano_usd",
    "plan",
    "subjects_for",
]

WINDOW_MS = 60_000
"""Requests and tokens are limited per minute."""
NANO_USD = 1_000_000_000
"""Spend is counted in integer nano-dollars: one token of a cheap model costs a fraction of a micro-dollar."""


class Kind(enum.StrEnum):
    REQUESTS = "requests"
    """Requests per minute (leaky bucket)."""
    TOKENS = "tokens"
    """Tokens per minute (leaky bucket), settled to the real count after the call."""
    STREAMS = "streams"
    """Concurrent generation streams, released when the call ends."""
    SPEND = "spend"
    """Nano-USD per budget period, settled to the real cost."""
    TOKEN_QUOTA = "token_quota"
    """Tokens per budget period, settled to the real count."""


SETTLED = frozenset({Kind.TOKENS, Kind.STREAMS, Kind.SPEND, Kind.TOKEN_QUOTA})
"""Kinds whose reservation changes after the call (requests are counted once, however the call ends)."""
BUDGETS = frozenset({Kind.SPEND, Kind.TOKEN_QUOTA})


@dataclass(frozen=True, slots=True)
class Rates:
    """What one subject may use; 0 means no limit."""

    rpm: int = 0
    """Requests per minute."""
    tpm: int = 0
    """Tokens (prompt + completion) per minute."""
    concurrent_streams: int = 0
    """Generation streams open at once."""
    budget_usd: float = 0.0
    """Spend per budget period."""
    token_quota: int = 0
    """Tokens per budget period."""

    def overridden(self, quota: Quota) -> Rates:
        """A principal's own quota wins field by field; None in the quota keeps the default (0 = unlimited)."""
        return Rates(
            rpm=_pick(quota.requests_per_minute, self.rpm),
            tpm=_pick(quota.tokens_per_minute, self.tpm),
            concurrent_streams=_pick(quota.max_concurrent_streams, self.concurrent_streams),
            budget_usd=self.budget_usd if quota.budget_usd is None else max(0.0, quota.budget_usd),
            token_quota=_pick(quota.token_quota, self.token_quota),
        )

    @property
    def has_budget(self) -> bool:
        return self.budget_usd > 0 or self.token_quota > 0


def _pick(override: int | None, default: int) -> int:
    return default if override is None else max(0, override)


@dataclass(frozen=True, slots=True)
class LimitRules:
    """The configured defaults: by kind of caller, and per model (exact names first, then glob patterns)."""

    anonymous: Rates = Rates()
    """Callers without a user id: anonymous ones, and every caller when auth is off."""
    authenticated: Rates = Rates()
    """Per user (all of a user's keys and sessions together)."""
    api_key: Rates = Rates()
    """Per API key, under its user's limits; a key's own quota overrides these."""
    models: tuple[tuple[str, Rates], ...] = ()
    """Per model, shared by every caller: `(name or glob, rates)`; a pattern's traffic shares one counter."""

    def model_entry(self, model: str) -> tuple[str, Rates] | None:
        for name, rates in self.models:
            if name == model:
                return name, rates
        for name, rates in self.models:
            if fnmatchcase(model, name):
                return name, rates
        return None


@dataclass(frozen=True, slots=True)
class Subject:
    name: str
    """`ip:<addr>`, `user:<id>`, `key:<id>` or `model:<name>`: the counter's identity across replicas."""
    rates: Rates


def subjects_for(
    who: Principal, client_ip: str, model_rates: tuple[str, Rates] | None, rules: LimitRules
) -> list[Subject]:
    """The subjects a call is limited as. Admins are limited like everyone else: a runaway admin script must
    not starve the users (set an admin's own quota to raise it)."""
    if who.user_id:
        out = [Subject(f"user:{who.user_id}", rules.authenticated.overridden(who.user_quota))]
    else:
        out = [Subject(f"ip:{client_ip}", rules.anonymous)]
    if who.api_key_id:
        out.append(Subject(f"key:{who.api_key_id}", rules.api_key.overridden(who.key_quota)))
    if model_rates is not None:
        out.append(Subject(f"model:{model_rates[0]}", model_rates[1]))
    return out


@dataclass(frozen=True, slots=True)
class Demand:
    """What one call asks for beyond being a request."""

    tokens: int = 0
    """Prompt estimate plus the completion allowance (`max_tokens`, else the configured default)."""
    nano_usd: int = 0
    """Estimated spend at the model's price."""
    stream: bool = False
    """Holds a concurrent-stream slot while it runs."""


@dataclass(frozen=True, slots=True)
class Check:
    """One counter a reservation touches: `amount` of `kind` against `limit` for `subject`."""

    subject: str
    kind: Kind
    limit: int
    amount: int


def plan(subjects: Sequence[Subject], demand: Demand, count_request: bool = True) -> tuple[Check, ...]:
    """Every check the call must pass, in a fixed order (subject by subject). Limits set to 0 are skipped."""
    out: list[Check] = []
    for s in subjects:
        r = s.rates
        if count_request and r.rpm > 0:
            out.append(Check(s.name, Kind.REQUESTS, r.rpm, 1))
        if demand.tokens > 0 and r.tpm > 0:
            out.append(Check(s.name, Kind.TOKENS, r.tpm, demand.tokens))
        if demand.stream and r.concurrent_streams > 0:
            out.append(Check(s.name, Kind.STREAMS, r.concurrent_streams, 1))
        if r.budget_usd > 0:
            out.append(Check(s.name, Kind.SPEND, nano_usd(r.budget_usd), demand.nano_usd))
        if r.token_quota > 0:
            out.append(Check(s.name, Kind.TOKEN_QUOTA, r.token_quota, demand.tokens))
    return tuple(out)


@dataclass(frozen=True, slots=True)
class Standing:
    """A check's counter right after the reservation (or, for a refusal, at the moment it was refused)."""

    check: Check
    remaining: int
    """Units left (requests, tokens, streams, nano-USD)."""
    reset_ms: int
    """Until the counter is back to its full allowance (0 when it is; a period's end for budgets)."""


@dataclass(frozen=True, slots=True)
class Verdict:
    admitted: bool
    standings: tuple[Standing, ...]
    """Every check when admitted; only the violated one when refused."""
    now_ms: int
    """The limiter's clock at the reservation (Redis' own for the shared limiter)."""
    retry_after_ms: int = 0
    """When refused: until the violated counter could admit this call; -1 when it never can (the call alone
    asks for more than the limit)."""
    period: str = ""
    """The budget period the reservation was counted in (its settle corrects that period's counters)."""


class Limiter(Protocol):
    """Reserves all of a call's checks at once (all or nothing) and settles them after the call."""

    async def reserve(self, reservation_id: str, checks: Sequence[Check]) -> Verdict: ...

    async def settle(
        self, reservation_id: str, checks: Sequence[Check], period: str, used_tokens: int, used_nano: int
    ) -> None:
        """Tokens and spend move from the reserved amounts to the used ones; stream slots are released."""
        ...


# --------------------------------------------------------------------------------------------- arithmetic


def drained(level: int, last_ms: int, now_ms: int, limit: int) -> int:
    """A bucket's level after draining `limit` per millisecond since `last_ms`."""
    elapsed = max(0, now_ms - last_ms)
    return max(0, level - elapsed * limit)


def bucket_admit(level: int, amount: int, limit: int) -> int | None:
    """The new level if `amount` fits under the per-window `limit`, else None."""
    after = level + amount * WINDOW_MS
    return after if after <= limit * WINDOW_MS else None


def bucket_retry_ms(level: int, amount: int, limit: int) -> int:
    """How long until `amount` fits (the bucket drains `limit` per ms); -1 when it never can."""
    if amount > limit:
        return -1
    excess = level + amount * WINDOW_MS - limit * WINDOW_MS
    return max(0, -(-excess // limit))


def bucket_remaining(level: int, limit: int) -> int:
    return max(0, (limit * WINDOW_MS - level) // WINDOW_MS)


def bucket_reset_ms(level: int, limit: int) -> int:
    return -(-level // limit)


@dataclass(frozen=True, slots=True)
class BudgetPeriod:
    """How budgets are counted: per calendar month (UTC) when `seconds` is 0, else per fixed span aligned to
    the Unix epoch (86400: per UTC day)."""

    seconds: int = 0

    def label(self, now_ms: int) -> str:
        """Names the period `now_ms` falls in (a counter's key suffix)."""
        if self.seconds:
            return str(now_ms // (self.seconds * 1000))
        day = _civil(now_ms // 86_400_000)
        return f"{day[0]:04d}{day[1]:02d}"

    def end_ms(self, now_ms: int) -> int:
        if self.seconds:
            span = self.seconds * 1000
            return (now_ms // span + 1) * span
        year, month, _ = _civil(now_ms // 86_400_000)
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)
        return _days_from_civil(year, month, 1) * 86_400_000


def _civil(days: int) -> tuple[int, int, int]:
    """Days since 1970-01-01 → (year, month, day), proleptic Gregorian (H. Hinnant's algorithm): no datetime
    objects on the admission path."""
    z = days + 719_468
    era = z // 146_097
    doe = z - era * 146_097
    yoe = (doe - doe // 1460 + doe // 36_524 - doe // 146_096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    day = doy - (153 * mp + 2) // 5 + 1
    month = mp + 3 if mp < 10 else mp - 9
    return yoe + era * 400 + (1 if month <= 2 else 0), month, day


def _days_from_civil(year: int, month: int, day: int) -> int:
    year -= 1 if month <= 2 else 0
    era = year // 400
    yoe = year - era * 400
    doy = (153 * (month + (-3 if month > 2 else 9)) + 2) // 5 + day - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146_097 + doe - 719_468


def nano_usd(usd: float) -> int:
    # Rounded up: an estimate must never reserve less than the price it stands for.
    return math.ceil(usd * NANO_USD - 1e-6) if usd > 0 else 0


def estimate_prompt_tokens(chars: int, messages: int) -> int:
    """A cheap upper-leaning estimate (no tokenizer on the admission path): ~3 characters a token, plus OpenAI's
    framing of 4 tokens a message and 3 for the reply. The settle corrects it to the real count."""
    return -(-chars // 3) + 4 * messages + 3
