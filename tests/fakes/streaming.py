"""Timed delivery of a response: the one place that implements the pacing,
fault-injection and disconnect-detection options for every dialect.

Dialects only describe *what* to send as pre-encoded bytes (a StreamPlan);
this module decides *when*, so ttft/gap/stall/cut/malformed behave the same
for OpenAI SSE, Anthropic SSE and Ollama NDJSON.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from aiohttp import web

from .recorder import RequestRecord
from .scenario import Scenario
from .state import state_of


@dataclass(frozen=True, slots=True)
class StreamPlan:
    """Pre-encoded bytes of one streamed response.

    Token chunk ``i`` is ``prefix + pieces[i] + suffix``: two concatenations
    per token and no per-chunk dicts or encoder calls, which keeps the fake
    cheap enough to serve as the zero-overhead baseline in benchmarks.
    """

    content_type: str
    head: bytes  # sent with the headers, before the TTFT wait
    prefix: bytes
    suffix: bytes
    pieces: Sequence[bytes]
    # Built lazily so trailing stats (e.g. Ollama durations) see real times.
    tail: Callable[[], bytes]
    malformed: bytes  # the invalid line used by malformed_after
    headers: Mapping[str, str] = field(default_factory=dict)


def _stop_point(sc: Scenario, n: int) -> tuple[int, str]:
    """How many tokens to send and what to do next: 'tail'|'cut'|'malformed'."""
    stop, action = n, "tail"
    if sc.malformed_after is not None and sc.malformed_after <= stop:
        stop, action = sc.malformed_after, "malformed"
    # cut wins a tie: a dropped connection is the harsher, rarer fault.
    if sc.cut_after is not None and sc.cut_after <= stop:
        stop, action = sc.cut_after, "cut"
    return stop, action


def cut_connection(request: web.Request) -> None:
    """Drop the TCP connection mid-response.

    transport.close() flushes what was already written and then sends FIN, so
    the client sees the tokens so far followed by a truncated chunked body.
    aiohttp's own final write then fails with ConnectionError, which it
    swallows as a premature disconnect.
    """
    transport = request.transport
    if transport is not None:
        transport.close()


async def _sleep_until(deadline: float) -> None:
    delay = deadline - time.monotonic()
    if delay > 0:
        await asyncio.sleep(delay)


async def run_stream(request: web.Request, rec: RequestRecord, sc: Scenario, plan: StreamPlan) -> web.StreamResponse:
    resp = web.StreamResponse(status=200, headers=plan.headers)
    resp.headers["Content-Type"] = plan.content_type
    rec.status = 200
    stop, action = _stop_point(sc, len(plan.pieces))
    pieces, prefix, suffix = plan.pieces, plan.prefix, plan.suffix
    try:
        # StreamResponse sends headers at prepare(); the head chunk follows
        # at once, as OpenAI sends its role chunk before any model latency.
        await resp.prepare(request)
        if plan.head:
            await resp.write(plan.head)
        # Absolute schedule (not sleep-per-gap) so pacing does not drift and
        # benchmarks can predict the ideal stream duration exactly.
        t0 = time.monotonic() + sc.ttft_ms / 1000
        gap = sc.gap_ms / 1000
        if sc.ttft_ms:
            await _sleep_until(t0)
        for i in range(stop):
            if gap and i:
                await _sleep_until(t0 + i * gap)
            await resp.write(prefix + pieces[i] + suffix)
            rec.tokens_sent = i + 1
        if action == "cut":
            cut_connection(request)
            return resp
        if action == "malformed":
            await resp.write(plan.malformed)
        else:
            if sc.stall_ms:
                await asyncio.sleep(sc.stall_ms / 1000)
            await resp.write(plan.tail())
        await resp.write_eof()
    except ConnectionResetError:
        # Client vanished between our writes (ClientConnectionResetError
        # subclasses this). Cancellation during sleeps is recorded by the
        # middleware instead.
        state_of(request).recorder.close(rec, status=200, client_closed_early=True)
    return resp


async def run_unary(
    request: web.Request,
    rec: RequestRecord,
    sc: Scenario,
    n: int,
    build: Callable[[], web.Response],
) -> web.StreamResponse:
    """Delay as a stream of ``n`` tokens would take, then answer in one piece.

    A disconnect during the delay surfaces as CancelledError (aiohttp's
    handler_cancellation), recorded by the middleware. cut_after and
    malformed_after also apply here, so unary error paths are testable too.
    """
    total_ms = sc.ttft_ms + n * sc.gap_ms + sc.stall_ms
    if total_ms:
        await asyncio.sleep(total_ms / 1000)
    if sc.cut_after is not None:
        cut_connection(request)
        return web.Response(status=200)
    if sc.malformed_after is not None:
        return web.Response(body=b"{not json", content_type="application/json")
    rec.tokens_sent = n
    return build()
