"""What runs on the local model's worker thread: loading a GGUF with llama.cpp, formatting chat with the model's
own template, generating tokens with a stop check between every two of them, and the channel that hands the text
to the event loop. `local_llama.py` owns the thread and the requests. `llama_cpp` is imported only when a model
loads (it costs ~0.6 s and is an optional extra), so this module imports without it.
"""

from __future__ import annotations

import asyncio
import codecs
import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from ...domain import FieldViolation, FinishReason, InvalidArgument
from .local_llama_logs import quiet_load

if TYPE_CHECKING:
    import llama_cpp

__all__ = [
    "CHATML_TEMPLATE",
    "Failed",
    "Generated",
    "LoadedModel",
    "LocalRequest",
    "Piece",
    "StopScanner",
    "TokenChannel",
    "TokenSink",
    "chat_template",
]

log = logging.getLogger("forge.providers.local")

# The template of the ChatML family (SmolLM2, Qwen, …), for a GGUF that carries none: llama-cpp-python would fall
# back to llama-2's format, and an empty template renders an empty prompt, which generates nothing.
CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

# llama.cpp's own sampling defaults for what OpenAI's API does not expose.
TOP_K = 40
MIN_P = 0.05
# Prompt tokens evaluated per llama.cpp call: a cancelled request is noticed between two chunks, so a long prompt
# cannot hold the model for its whole prefill (~450 tokens/s on one core here: 64 tokens is ~0.15 s).
PREFILL_CHUNK = 64
# Pieces the worker may run ahead of a slow reader before it waits (a piece is one token, or a few held back).
MAX_AHEAD = 64


def chat_template(metadata: dict[str, str]) -> str:
    """The GGUF's own chat template, or ChatML when the file has none (or an empty one)."""
    template = metadata.get("tokenizer.chat_template", "")
    return template if template.strip() else CHATML_TEMPLATE


@dataclass(frozen=True, slots=True)
class LocalRequest:
    """A chat request as the worker needs it: plain messages and resolved sampling settings."""

    messages: tuple[dict[str, str], ...]
    temperature: float
    top_p: float
    seed: int
    reproducible: bool
    """The caller chose the seed: evaluate the prompt from scratch so the same request gives the same text."""
    max_tokens: int | None = None
    stop: tuple[str, ...] = ()
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0


@dataclass(frozen=True, slots=True)
class Generated:
    prompt_tokens: int
    completion_tokens: int
    finish: FinishReason


class TokenSink(Protocol):
    """Where the worker puts text. `send` blocks while the reader is behind and returns False once it left."""

    @property
    def stopped(self) -> bool: ...

    def send(self, text: str, tokens: int) -> bool: ...


class StopScanner:
    """Holds back text that may be the start of a stop sequence, so a stop string never leaks out in pieces."""

    def __init__(self, stops: Sequence[str]) -> None:
        self._stops = [s for s in stops if s]
        self._held = ""

    def feed(self, text: str) -> tuple[str, bool]:
        """(text safe to send, whether a stop sequence ended the answer)."""
        buf = self._held + text
        if not self._stops:
            return buf, False
        hits = [i for s in self._stops if (i := buf.find(s)) >= 0]
        if hits:
            self._held = ""
            return buf[: min(hits)], True
        keep = max((k for s in self._stops for k in range(1, len(s)) if buf.endswith(s[:k])), default=0)
        self._held = buf[len(buf) - keep :] if keep else ""
        return buf[: len(buf) - keep], False

    def flush(self) -> str:
        held, self._held = self._held, ""
        return held


class LoadedModel:
    """One llama.cpp model and context. Not thread-safe: only the provider's worker thread calls it."""

    def __init__(self, llm: llama_cpp.Llama, template: str, n_ctx: int) -> None:
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        self._llm = llm
        self.n_ctx = n_ctx
        self._vocab = _vocab(llm)
        eos = llm.detokenize([llm.token_eos()], special=True).decode("utf-8", "replace")
        bos = llm.detokenize([llm.token_bos()], special=True).decode("utf-8", "replace")
        self._format = Jinja2ChatFormatter(template=template, eos_token=eos, bos_token=bos)

    @classmethod
    def load(cls, path: Path, *, n_ctx: int, n_threads: int, template: str | None = None) -> LoadedModel:
        started = time.perf_counter()
        import llama_cpp

        imported = time.perf_counter()
        # The same count for prompt and generation: on this busy 2-core machine a second OpenMP thread, spinning
        # for a core the event loop and other processes also want, cut decoding from ~105 to 11-41 tokens/s.
        # verbose=True: a quiet load would point the whole process's stdout and stderr at /dev/null meanwhile.
        with quiet_load():
            llm = llama_cpp.Llama(
                model_path=str(path), n_ctx=n_ctx, n_threads=n_threads, n_threads_batch=n_threads, verbose=True
            )
        llm.verbose = False  # no per-call prints (cache hits, timings) on stderr
        model = cls(llm, template or chat_template(llm.metadata), n_ctx)
        log.info(
            "local model %s loaded in %.2fs (import %.2fs), %d threads",
            path.name,
            time.perf_counter() - started,
            imported - started,
            n_threads,
        )
        return model

    def close(self) -> None:
        self._llm.close()

    def prompt_tokens(self, messages: Sequence[dict[str, str]]) -> list[int]:
        # llama-cpp-python types messages as OpenAI's TypedDicts; plain role/content dicts are what it reads.
        plain: list[Any] = list(messages)
        prompt: str = self._format(messages=plain).prompt
        # The template writes any BOS itself (llama-cpp-python's chat handlers tokenize the same way).
        tokens: list[int] = self._llm.tokenize(prompt.encode("utf-8"), add_bos=False, special=True)
        return tokens

    def generate(self, request: LocalRequest, sink: TokenSink) -> Generated:
        import llama_cpp

        llm = self._llm
        prompt = self.prompt_tokens(request.messages)
        budget = self.n_ctx - len(prompt)
        if budget <= 0:
            detail = f"the prompt is {len(prompt)} tokens; the local model's context holds {self.n_ctx}"
            raise InvalidArgument([FieldViolation("chat.messages", detail)])
        limit = budget if request.max_tokens is None else min(request.max_tokens, budget)
        if not self._prefill(prompt, request.reproducible, sink):
            return Generated(len(prompt), 0, FinishReason.CANCELLED)
        llm.set_seed(request.seed)
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        scanner = StopScanner(request.stop)
        produced = unsent = 0
        finish, hit = FinishReason.LENGTH, False
        # The prompt is already evaluated, so generate() finds it cached and samples at once.
        tokens = llm.generate(
            prompt,
            temp=request.temperature,
            top_p=request.top_p,
            top_k=TOP_K,
            min_p=MIN_P,
            repeat_penalty=1.0,
            presence_penalty=request.presence_penalty,
            frequency_penalty=request.frequency_penalty,
        )
        try:
            for token in tokens:
                if sink.stopped:
                    return Generated(len(prompt), produced, FinishReason.CANCELLED)
                if llama_cpp.llama_vocab_is_eog(self._vocab, token):
                    finish = FinishReason.STOP
                    break
                produced += 1
                unsent += 1
                text, hit = scanner.feed(decoder.decode(llm.detokenize([token])))
                if text:
                    if not sink.send(text, unsent):
                        return Generated(len(prompt), produced, FinishReason.CANCELLED)
                    unsent = 0
                if hit:
                    finish = FinishReason.STOP
                    break
                if produced >= limit:
                    break
        finally:
            tokens.close()
        if not hit:
            text, hit = scanner.feed(decoder.decode(b"", final=True))
            tail = text if hit else text + scanner.flush()
            if tail and not sink.send(tail, unsent):
                return Generated(len(prompt), produced, FinishReason.CANCELLED)
        return Generated(len(prompt), produced, FinishReason.STOP if hit else finish)

    def _prefill(self, prompt: list[int], fresh: bool, sink: TokenSink) -> bool:
        """Evaluates the prompt in chunks, reusing the cached prefix of the previous one unless `fresh`."""
        llm = self._llm
        cached = 0
        if not fresh:
            for previous, token in zip(llm.input_ids[: llm.n_tokens], prompt, strict=False):
                if previous != token:
                    break
                cached += 1
        # The last prompt token is always evaluated again: its logits are what sampling starts from.
        llm.n_tokens = min(cached, len(prompt) - 1)
        for start in range(llm.n_tokens, len(prompt), PREFILL_CHUNK):
            if sink.stopped:
                return False
            llm.eval(prompt[start : start + PREFILL_CHUNK])
        return True


@dataclass(slots=True)
class Piece:
    text: str
    tokens: int


@dataclass(slots=True)
class Failed:
    error: BaseException


class TokenChannel:
    """Worker thread → event loop. At most `ahead` pieces are in flight: a slow reader holds the worker (the
    back-pressure every provider gives) instead of growing a buffer. `stop()` wakes a waiting worker and makes
    its next check between tokens end the generation."""

    def __init__(self, loop: asyncio.AbstractEventLoop, ahead: int = MAX_AHEAD) -> None:
        self._loop = loop
        self._queue: asyncio.Queue[Piece | Generated | Failed] = asyncio.Queue()
        self._room = threading.Condition()
        self._in_flight = 0
        self._ahead = ahead
        self._stopped = False

    # The worker thread's side.
    @property
    def stopped(self) -> bool:
        return self._stopped

    def send(self, text: str, tokens: int) -> bool:
        with self._room:
            while self._in_flight >= self._ahead and not self._stopped:
                self._room.wait()
            if self._stopped:
                return False
            self._in_flight += 1
        return self._post(Piece(text, tokens))

    def finish(self, outcome: Generated | Failed) -> None:
        self._post(outcome)

    def _post(self, item: Piece | Generated | Failed) -> bool:
        try:
            self._loop.call_soon_threadsafe(self._queue.put_nowait, item)
        except RuntimeError:  # the loop is closed: nobody will read this generation any more
            self.stop()
            return False
        return True

    # The event loop's side.
    async def receive(self) -> list[Piece | Generated | Failed]:
        """Everything that arrived, at least one item: what piled up while the reader was busy goes out as one."""
        items = [await self._queue.get()]
        while not self._queue.empty():
            items.append(self._queue.get_nowait())
        taken = sum(isinstance(i, Piece) for i in items)
        if taken:
            with self._room:
                self._in_flight -= taken
                self._room.notify()
        return items

    def stop(self) -> None:
        with self._room:
            self._stopped = True
            self._room.notify_all()


def _vocab(llm: llama_cpp.Llama) -> llama_cpp.llama_vocab_p:
    import llama_cpp

    vocab: llama_cpp.llama_vocab_p | None = llama_cpp.llama_model_get_vocab(llm.model)
    if vocab is None:
        raise RuntimeError("the GGUF has no vocabulary")
    return vocab
