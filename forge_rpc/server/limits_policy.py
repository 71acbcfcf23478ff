"""The rate-limit and budget policy of the pipeline (issue #5).

`admit` reserves everything the call may use — one request, its tokens, a stream slot, its estimated spend — for
each subject it is limited as (its user or client address, its API key, its model), all at once or not at all.
Over a limit it refuses with RESOURCE_EXHAUSTED (QuotaFailure naming the subject, RetryInfo with the computed
wait); the edge answers 429 with `retry-after`. Admitted, it sends OpenAI's `x-ratelimit-*` headers as initial
metadata — so they precede the first streamed byte — and seed 003's `x-ratelimit-limit/remaining/reset`. The
release, awaited after the call however it ended, settles the tokens and spend to what the servicer reported in
`call_usage` and frees the stream slot.

Every RPC counts toward requests/minute except `limits.exempt` (health probes); see `limits_demand` for which
RPCs also reserve tokens. Who is counted: the user when the principal has one, else the client address —
anonymous callers, and every caller when auth is off (the local operator has no user id). The address is
`x-forge-client-ip` from the edge when the call comes from the edge (in process, or a private/loopback peer),
else the gRPC peer: a remote gRPC client cannot pick its own bucket by sending that metadata.
"""

from __future__ import annotations

import ipaddress
import math
import time
import uuid
from collections.abc import Callable
from typing import Any

from ..domain import ErrorCode, ForgeError
from ..domain.ledger import client_ip_from_peer
from ..domain.limits import (
    NANO_USD,
    SETTLED,
    Check,
    Demand,
    Kind,
    Limiter,
    Rates,
    Standing,
    Verdict,
    nano_usd,
    plan,
    subjects_for,
)
from ..domain.ports import PriceList
from ..services.context import (
    CallContext,
    add_response_header,
    add_trailing,
    call_usage,
    metadata_value,
    peer_of,
    principal,
    request_id,
)
from .config.limits import LimitsConfig
from .limits_demand import need_of
from .policy import CallInfo, Release

__all__ = ["LimitsPolicy", "client_address", "duration_text"]

Resolve = Callable[[str], tuple[str, str]]
"""Requested model ("" for the default) → (the name limits count it under, the name it is priced under)."""


def _same(model: str) -> tuple[str, str]:
    return model, model


class LimitsPolicy:
    def __init__(self, config: LimitsConfig, limiter: Limiter, prices: PriceList, resolve: Resolve = _same) -> None:
        self.limiter = limiter
        """Replaced at start by the shared Redis limiter when Redis is configured."""
        self._rules = config.rules()
        self._exempt = frozenset(config.exempt)
        self._default_completion = config.default_max_tokens
        self._period = config.budget_period
        self._prices = prices
        self._resolve = resolve
        self._model_rates: dict[str, tuple[str, Rates] | None] = {}
        # Nothing limits a caller without a user or key (every caller while auth is off, the default install):
        # such calls skip the policy before any work.
        self._strangers_free = self._rules.anonymous == Rates() and not self._rules.models

    def _rates_of(self, model: str) -> tuple[str, Rates] | None:
        if not self._rules.models or not model:
            return None
        try:
            return self._model_rates[model]
        except KeyError:
            if len(self._model_rates) > 10_000:  # model names come from callers: keep the memo bounded
                self._model_rates.clear()
            found = self._model_rates[model] = self._rules.model_entry(model)
            return found

    async def admit(self, call: CallInfo, request: Any, context: CallContext) -> Release | None:
        if call.full_name in self._exempt:
            return None
        who = principal.get()
        if self._strangers_free and not who.user_id and not who.api_key_id:
            return None
        need = need_of(call.full_name, request, self._default_completion)
        demand, rates = Demand(), None
        priced = ""
        if need is not None:
            named, priced = self._resolve(need.model)
            rates = self._rates_of(named)
            demand = Demand(need.tokens, 0, need.stream)
        subjects = subjects_for(who, "" if who.user_id else client_address(context), rates, self._rules)
        if need is not None and any(s.rates.budget_usd > 0 for s in subjects):
            cost = self._prices.cost(priced, need.prompt_tokens, need.completion_tokens)
            demand = Demand(demand.tokens, nano_usd(cost), demand.stream)
        checks = plan(subjects, demand)
        if not checks:
            return None
        streams = any(c.kind is Kind.STREAMS for c in checks)
        # A stream slot is a set member: it needs an id no other call has (client request ids may repeat).
        reservation = uuid.uuid4().hex if streams else request_id.get()
        limiter = self.limiter
        verdict = await limiter.reserve(reservation, checks)
        if not verdict.admitted:
            add_trailing(*_headers(verdict.standings))
            raise self._refusal(verdict)
        add_response_header(*_headers(verdict.standings))
        if not any(c.kind in SETTLED for c in checks):
            return None
        spent = call_usage.get()  # the servicer fills this very object as the call runs

        async def release(code: str) -> None:
            await limiter.settle(
                reservation, checks, verdict.period, spent.total_tokens, nano_usd(max(0.0, spent.cost_usd))
            )

        return release

    def _refusal(self, verdict: Verdict) -> ForgeError:
        c = verdict.standings[0].check
        retry_ms = verdict.retry_after_ms
        wait = f"retry after {math.ceil(retry_ms / 1000)} seconds" if retry_ms >= 0 else "it can never fit"
        period = _period_text(self._period.seconds)
        if c.kind is Kind.REQUESTS:
            text = f"rate limit exceeded: {c.limit} requests per minute for {c.subject}; {wait}"
        elif c.kind is Kind.TOKENS:
            text = (
                f"rate limit exceeded: {c.limit} tokens per minute for {c.subject}, and this request reserves "
                f"{c.amount} (its prompt estimate plus max_tokens); {wait}"
            )
        elif c.kind is Kind.STREAMS:
            text = f"too many concurrent streams: at most {c.limit} for {c.subject}; retry when one ends"
        elif c.kind is Kind.SPEND:
            text = (
                f"budget exhausted: ${c.limit / NANO_USD:.4f} per {period} for {c.subject}, and this request "
                f"reserves ${c.amount / NANO_USD:.6f}; {wait}"
            )
        else:
            text = f"token quota exhausted: {c.limit} tokens per {period} for {c.subject}; {wait}"
        budget = c.kind in (Kind.SPEND, Kind.TOKEN_QUOTA)
        return ForgeError(
            text,
            ErrorCode.RESOURCE_EXHAUSTED,
            "BUDGET_EXCEEDED" if budget else "RATE_LIMIT_EXCEEDED",
            # A request that can never fit gets no RetryInfo: waiting would not help.
            retry_after_s=retry_ms / 1000 if retry_ms >= 0 else None,
            metadata={"subject": c.subject, "limit": str(c.limit), "kind": c.kind.value},
            quota_violations=((c.subject, text),),
        )


def client_address(context: CallContext) -> str:
    peer, forwarded = peer_of(context), metadata_value(context, "x-forge-client-ip")
    key = (peer, forwarded)
    found = _ADDRESSES.get(key)
    if found is None:
        # Parsing addresses costs more than the rest of an admission: remember the few a replica sees.
        if len(_ADDRESSES) >= 4096:
            _ADDRESSES.clear()
        found = _ADDRESSES[key] = _address(peer, forwarded)
    return found


_ADDRESSES: dict[tuple[str, str | None], str] = {}


def _address(peer: str, forwarded: str | None) -> str:
    address = client_ip_from_peer(peer)
    if forwarded and (address is None or _trusted(address)):
        named = client_ip_from_peer(forwarded)
        if named is not None:
            return named
    return address or "unknown"


def _trusted(peer: str) -> bool:
    address = ipaddress.ip_address(peer)
    return address.is_private or address.is_loopback


def _tightest(standings: tuple[Standing, ...], kind: Kind) -> Standing | None:
    found = [s for s in standings if s.check.kind is kind]
    return min(found, key=lambda s: (s.remaining, -s.reset_ms)) if found else None


def _headers(standings: tuple[Standing, ...]) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    requests = _tightest(standings, Kind.REQUESTS)
    if requests is not None:
        out += _triple("requests", requests.check, requests)
        # Seed 003's spelling: the reset as a Unix time.
        out += [
            ("x-ratelimit-limit", str(requests.check.limit)),
            ("x-ratelimit-remaining", str(requests.remaining)),
            ("x-ratelimit-reset", str(math.ceil(time.time() + requests.reset_ms / 1000))),
        ]
    tokens = _tightest(standings, Kind.TOKENS)
    if tokens is not None:
        out += _triple("tokens", tokens.check, tokens)
    return out


def _triple(unit: str, check: Check, standing: Standing) -> list[tuple[str, str]]:
    return [
        (f"x-ratelimit-limit-{unit}", str(check.limit)),
        (f"x-ratelimit-remaining-{unit}", str(standing.remaining)),
        (f"x-ratelimit-reset-{unit}", duration_text(standing.reset_ms)),
    ]


def _period_text(seconds: int) -> str:
    if not seconds:
        return "calendar month (UTC)"
    for size, unit in ((86_400, "day"), (3600, "hour"), (60, "minute")):
        if seconds % size == 0:
            n = seconds // size
            return f"{n} {unit}s" if n > 1 else unit
    return f"{seconds} seconds"


def duration_text(ms: int) -> str:
    """OpenAI's spelling of a wait: `250ms`, `1.5s`, `6m0s`."""
    if ms < 1000:
        return f"{max(0, ms)}ms"
    seconds = ms / 1000
    minutes, rest = divmod(seconds, 60)
    text = f"{rest:.3f}".rstrip("0").rstrip(".") + "s"
    return f"{int(minutes)}m{text}" if minutes else text
