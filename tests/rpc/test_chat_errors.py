"""Every error a user can cause or meet gets the right status and details, never a hang or a stack trace."""

from __future__ import annotations

import grpc
import pytest
from forge.chat.v1 import chat_pb2, chat_pb2_grpc
from google.rpc import error_details_pb2

from tests.fakes import fake_model
from tests.rpc.rich_status import detail, reason
from tests.rpc.test_chat import collect, request

pytestmark = pytest.mark.asyncio


async def unary_error(
    channel: grpc.aio.Channel, chat: chat_pb2.ChatRequest, timeout: float | None = None
) -> grpc.aio.AioRpcError:
    stub = chat_pb2_grpc.ChatServiceStub(channel)
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.CreateChatCompletion(chat_pb2.CreateChatCompletionRequest(chat=chat), timeout=timeout)
    return info.value


async def stream_error(channel: grpc.aio.Channel, chat: chat_pb2.ChatRequest) -> grpc.aio.AioRpcError:
    stub = chat_pb2_grpc.ChatServiceStub(channel)
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await collect(stub, chat)
    return info.value


async def test_empty_messages_is_invalid_argument_with_field_violation(channel: grpc.aio.Channel) -> None:
    err = await stream_error(channel, chat_pb2.ChatRequest(model="fake"))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    violations = detail(err, error_details_pb2.BadRequest).field_violations
    assert [v.field for v in violations] == ["chat.messages"]
    assert reason(err) == "INVALID_ARGUMENT"


async def test_bad_role_and_bad_temperature_are_named(channel: grpc.aio.Channel) -> None:
    chat = chat_pb2.ChatRequest(model="fake", messages=[chat_pb2.Message(role="wizard", content="hi")], temperature=7.0)
    err = await unary_error(channel, chat)
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    fields = {v.field for v in detail(err, error_details_pb2.BadRequest).field_violations}
    assert fields == {"chat.messages[0].role", "chat.temperature"}


async def test_unknown_model_is_not_found_listing_available_models(channel: grpc.aio.Channel) -> None:
    err = await stream_error(channel, request("gpt-nonexistent"))
    assert err.code() == grpc.StatusCode.NOT_FOUND
    assert reason(err) == "MODEL_NOT_FOUND"
    assert "fake" in (err.details() or "") and "llama3.2:1b" in (err.details() or "")


async def test_upstream_401_is_failed_precondition_naming_the_key(channel: grpc.aio.Channel) -> None:
    err = await unary_error(channel, request("badkey/gpt-fake"))
    assert err.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert reason(err) == "PROVIDER_AUTH"
    assert "FAKE_KEY" in (err.details() or "")
    assert detail(err, error_details_pb2.ErrorInfo).metadata["env"] == "FAKE_KEY"


@pytest.mark.parametrize("stream", [False, True])
async def test_upstream_429_is_resource_exhausted_with_retry_info(channel: grpc.aio.Channel, stream: bool) -> None:
    chat = request(fake_model("fake/gpt-fake", fail=429, retry_after=7))
    err = await (stream_error(channel, chat) if stream else unary_error(channel, chat))
    assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert detail(err, error_details_pb2.RetryInfo).retry_delay.seconds == 7
    assert detail(err, error_details_pb2.QuotaFailure).violations


@pytest.mark.parametrize("status", [500, 503])
async def test_upstream_5xx_is_unavailable(channel: grpc.aio.Channel, status: int) -> None:
    err = await unary_error(channel, request(fake_model("fake/gpt-fake", fail=status)))
    assert err.code() == grpc.StatusCode.UNAVAILABLE
    assert reason(err) == "PROVIDER_UNAVAILABLE"


async def test_unreachable_upstream_is_unavailable(channel: grpc.aio.Channel) -> None:
    err = await stream_error(channel, request("down/gpt-fake"))
    assert err.code() == grpc.StatusCode.UNAVAILABLE


async def test_ollama_unknown_model_is_not_found(channel: grpc.aio.Channel) -> None:
    err = await unary_error(channel, request("ollama/never-pulled"))
    assert err.code() == grpc.StatusCode.NOT_FOUND


async def test_deadline_is_deadline_exceeded(channel: grpc.aio.Channel) -> None:
    err = await unary_error(channel, request(fake_model("fake/gpt-fake", ttft_ms=5000)), timeout=0.3)
    assert err.code() == grpc.StatusCode.DEADLINE_EXCEEDED


@pytest.mark.parametrize("option", ["cut_after", "malformed_after"])
async def test_broken_stream_ends_with_error_event_finish_and_status(channel: grpc.aio.Channel, option: str) -> None:
    stub = chat_pb2_grpc.ChatServiceStub(channel)
    call = stub.StreamChatCompletion(
        chat_pb2.StreamChatCompletionRequest(chat=request(fake_model("fake/gpt-fake", tokens=10, **{option: 3})))
    )
    events: list[chat_pb2.ChatEvent] = []
    with pytest.raises(grpc.aio.AioRpcError) as info:
        async for e in call:
            events.append(e)
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE
    assert reason(info.value) == "PROVIDER_PROTOCOL"
    kinds = [e.WhichOneof("event") for e in events]
    assert kinds[-2:] == ["error", "finish"]
    assert events[-1].finish.reason == chat_pb2.FINISH_REASON_ERROR
    # What arrived intact is delivered in order (aiohttp may drop bytes it buffered with a cut connection).
    text = "".join(e.delta.content for e in events if e.delta.content)
    assert text
    assert "tok0 tok1 tok2 ".startswith(text)


async def test_batch_limits_are_enforced(channel: grpc.aio.Channel) -> None:
    stub = chat_pb2_grpc.ChatServiceStub(channel)
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.BatchCreateChatCompletions(chat_pb2.BatchCreateChatCompletionsRequest())
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_a_prompt_over_the_context_window_has_its_own_reason(channel: grpc.aio.Channel) -> None:
    stub = chat_pb2_grpc.ChatServiceStub(channel)
    chat = request(fake_model("fake/gpt-fake", context_window=2), text="far too many words for this model")
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.CreateChatCompletion(chat_pb2.CreateChatCompletionRequest(chat=chat))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert reason(err.value) == "CONTEXT_WINDOW_EXCEEDED"
