"""The local provider under the ChatEngine, without a server: sampling settings, stop sequences, the chat
template fallback, limits and errors."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from forge_rpc.adapters.accounting import LocalTokenCounter, PriceTable
from forge_rpc.adapters.providers.local_llama import LOCAL_MODEL_NAME, LocalLlamaProvider, find_packaged_gguf
from forge_rpc.adapters.providers.local_llama_runtime import CHATML_TEMPLATE
from forge_rpc.domain import (
    ChatEngine,
    ChatMessage,
    ChatParams,
    Deployment,
    ErrorCode,
    FinishReason,
    ForgeError,
    ModelCatalog,
    TextDelta,
)
from tests.local.conftest import needs_local_model

pytestmark = [pytest.mark.asyncio, needs_local_model]


class OneModel:
    """The catalog of a forge that serves only the local model."""

    def __init__(self, provider: LocalLlamaProvider) -> None:
        deployment = Deployment(LOCAL_MODEL_NAME, "local", provider.record.upstream_model)
        self._catalog = ModelCatalog([deployment], LOCAL_MODEL_NAME)

    def current(self) -> ModelCatalog:
        return self._catalog

    async def refresh(self) -> ModelCatalog:
        return self._catalog


def engine_for(provider: LocalLlamaProvider) -> ChatEngine:
    return ChatEngine(OneModel(provider), {"local": provider}, LocalTokenCounter(), PriceTable())


@pytest.fixture
def engine(local_provider: LocalLlamaProvider) -> ChatEngine:
    return engine_for(local_provider)


@pytest_asyncio.fixture
async def own_provider(request: pytest.FixtureRequest) -> AsyncIterator[LocalLlamaProvider]:
    """A second provider (its own model and thread) with the options the test passes as its parameter."""
    path = find_packaged_gguf()
    assert path is not None
    provider = LocalLlamaProvider(path, **request.param)
    try:
        yield provider
    finally:
        await provider.close()


def ask(text: str, **kw: object) -> ChatParams:
    return ChatParams(model=LOCAL_MODEL_NAME, messages=[ChatMessage("user", text)], **kw)  # type: ignore[arg-type]


async def test_unary_reports_real_usage_and_length(engine: ChatEngine) -> None:
    result = await engine.complete(ask("Describe the moon.", temperature=0.0, max_tokens=5), None)
    assert result.completion.finish is FinishReason.LENGTH
    assert result.usage.completion_tokens == 5 and not result.usage.estimated
    assert result.completion.text.strip()
    assert result.provider == "local"


async def test_stop_sequence_ends_the_answer_without_leaking(engine: ChatEngine) -> None:
    params = ask("Count from one to ten.", temperature=0.0, seed=1, max_tokens=40)
    full = (await engine.complete(params, None)).completion.text
    stop = full[len(full) // 2 :][:3]  # three characters from the middle: likely across a token boundary
    assert len(stop) == 3, full
    params.stop = ["never said", stop]
    cut = (await engine.complete(params, None)).completion
    assert cut.finish is FinishReason.STOP
    assert cut.text == full[: full.index(stop)]


async def test_stream_closed_early_frees_the_model(local_provider: LocalLlamaProvider) -> None:
    events = local_provider.stream("", ask("Write a long poem.", temperature=0.0, max_tokens=256), None)
    first = await anext(events)
    assert isinstance(first, TextDelta)
    await events.aclose()  # what a consumer that stops reading does
    await asyncio.wait_for(local_provider.until_idle(), 1.0)


async def test_deadline_stops_the_generation(engine: ChatEngine, local_provider: LocalLlamaProvider) -> None:
    with pytest.raises(ForgeError) as info:
        await engine.complete(ask("Write a long story.", temperature=0.0, max_tokens=500), 0.3)
    assert info.value.code is ErrorCode.DEADLINE_EXCEEDED
    await asyncio.wait_for(local_provider.until_idle(), 0.5)


async def test_tools_and_json_are_refused_with_the_field(engine: ChatEngine) -> None:
    tool = {"type": "function", "function": {"name": "lookup"}}
    with pytest.raises(ForgeError) as info:
        await engine.complete(ask("hi", tools=[tool], response_format={"type": "json_object"}), None)
    assert info.value.code is ErrorCode.INVALID_ARGUMENT
    assert {v.field for v in info.value.violations} == {"chat.tools", "chat.response_format"}


@pytest.mark.parametrize("own_provider", [{"n_ctx": 64}], indirect=True)
async def test_prompt_longer_than_the_context_is_invalid(own_provider: LocalLlamaProvider) -> None:
    with pytest.raises(ForgeError) as info:
        await engine_for(own_provider).complete(ask("word " * 100), None)
    assert info.value.code is ErrorCode.INVALID_ARGUMENT
    assert "context holds 64" in info.value.message


@pytest.mark.parametrize("own_provider", [{"chat_template": CHATML_TEMPLATE}], indirect=True)
async def test_chatml_fallback_template_generates(own_provider: LocalLlamaProvider) -> None:
    """What a GGUF without a template gets: ChatML, SmolLM2's family format, which still yields real tokens."""
    result = await engine_for(own_provider).complete(ask("Say hello.", temperature=0.0, max_tokens=8), None)
    assert result.completion.text.strip()
    assert result.usage.completion_tokens > 0
