"""Provider API keys: masked status, tests against the provider (the fake rejects `bad-key`), updates at
runtime that are sealed in PostgreSQL (never plain), used by the next request, re-applied at start, and never
echoed back."""

from __future__ import annotations

import dataclasses
import stat
from pathlib import Path
from typing import TYPE_CHECKING

import aiohttp
import grpc
import pytest
from forge.chat.v1 import chat_pb2, chat_pb2_grpc
from forge.routing.v1 import routing_pb2, routing_pb2_grpc
from google.protobuf import json_format

from forge_rpc.server.app import ForgeApp
from forge_rpc.server.config import RoutingConfig
from forge_rpc.testing import running_forge
from tests.fakes import FakeUpstream, fake_model
from tests.routing.conftest import BADKEY, FAKE, routing_config, table_rows
from tests.rpc.test_chat import request

if TYPE_CHECKING:
    Stub = routing_pb2_grpc.RoutingServiceAsyncStub

pytestmark = pytest.mark.asyncio

NEW_KEY = "sk-new-0123456789abcdef"


async def status(stub: Stub, service: str) -> routing_pb2.ProviderKeyStatus:
    return await stub.GetProviderKeyStatus(routing_pb2.GetProviderKeyStatusRequest(service=service))


async def update(stub: Stub, service: str, key: str, test: bool = False) -> routing_pb2.UpdateProviderKeyResponse:
    return await stub.UpdateProviderKey(routing_pb2.UpdateProviderKeyRequest(service=service, api_key=key, test=test))


async def key_seen(app: ForgeApp, fake: FakeUpstream, model: str, tag: str) -> str:
    """The Authorization header the fake received for one chat call to `model`."""
    async with grpc.aio.insecure_channel(f"127.0.0.1:{app.grpc_port}") as ch:
        chat = chat_pb2_grpc.ChatServiceStub(ch)
        await chat.CreateChatCompletion(chat_pb2.CreateChatCompletionRequest(chat=request(fake_model(model, tag=tag))))
    (seen,) = await fake.requests(tag)
    return str(seen["headers"]["authorization"])


async def read_to_end(call: object) -> list[chat_pb2.ChatEvent]:
    """The rest of a stream already read from with `read()` (grpc.aio forbids mixing that with iteration)."""
    out = []
    while (event := await call.read()) is not grpc.aio.EOF:  # type: ignore[attr-defined]
        assert isinstance(event, chat_pb2.ChatEvent)
        out.append(event)
    return out


async def test_status_shows_source_and_masked_preview(routing: Stub) -> None:
    fake_key = await status(routing, FAKE)
    assert (fake_key.configured, fake_key.source, fake_key.key_preview) == (True, "config", "…")  # "sk-test": short
    assert not fake_key.HasField("valid")  # never tested
    from_env = await status(routing, BADKEY)
    assert (from_env.source, from_env.env_var) == ("env", "FAKE_KEY")
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await status(routing, "nowhere")
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await status(routing, "ollama")
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION  # Ollama takes no key


async def test_update_is_sealed_used_next_and_reapplied_at_start(
    routing: Stub, routed: ForgeApp, fake: FakeUpstream
) -> None:
    assert await key_seen(routed, fake, "fake/gpt-a", "key-before") == "Bearer sk-test"
    answer = await update(routing, FAKE, NEW_KEY)
    assert answer.success
    assert NEW_KEY not in str(answer)
    assert (answer.status.source, answer.status.key_preview) == ("stored", "sk-…cdef")
    assert answer.status.updated_at.seconds > 0

    rows = await table_rows(routed, "SELECT ciphertext, key_id, row_to_json(p)::text FROM provider_keys p")
    ((sealed, key_id, whole_row),) = rows
    assert NEW_KEY.encode() not in bytes(sealed)
    assert NEW_KEY not in whole_row and "cdef" not in whole_row
    assert key_id

    assert await key_seen(routed, fake, "fake/gpt-b", "key-after") == f"Bearer {NEW_KEY}"
    config = await routing.GetConfig(routing_pb2.GetConfigRequest())
    assert NEW_KEY not in str(config)
    assert json_format.MessageToDict(config.services)[FAKE]["key_preview"] == "sk-…cdef"

    # Another replica (or a restart) with the same server key opens it and uses it from its first request.
    async with running_forge(routed.config, http=False) as again:
        assert await key_seen(again, fake, "fake/gpt-c", "key-restart") == f"Bearer {NEW_KEY}"
    # With another server key it cannot, says so in its log, and keeps the configured key.
    other = dataclasses.replace(routed.config, routing=RoutingConfig(secret_key="another-server-key-" + "x" * 20))
    async with running_forge(other, http=False) as stranger:
        assert await key_seen(stranger, fake, "fake/gpt-d", "key-stranger") == "Bearer sk-test"


async def test_a_stream_keeps_its_key_across_an_update(routing: Stub, routed: ForgeApp, fake: FakeUpstream) -> None:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{routed.grpc_port}") as ch:
        chat = chat_pb2_grpc.ChatServiceStub(ch)
        model = fake_model("fake/gpt-long", tokens=60, gap_ms=10, tag="key-stream")
        call = chat.StreamChatCompletion(chat_pb2.StreamChatCompletionRequest(chat=request(model)))
        first = await call.read()
        assert isinstance(first, chat_pb2.ChatEvent) and first.WhichOneof("event") == "delta"
        await update(routing, FAKE, NEW_KEY)
        rest = await read_to_end(call)
    kinds = [e.WhichOneof("event") for e in rest]
    assert kinds[-1] == "finish"
    assert rest[-2].usage.completion_tokens == 60  # the stream finished on the provider object it started on
    (seen,) = await fake.requests("key-stream")
    assert seen["headers"]["authorization"] == "Bearer sk-test" and not seen["client_closed_early"]
    assert await key_seen(routed, fake, "fake/gpt-e", "key-next") == f"Bearer {NEW_KEY}"


async def test_key_tests_against_the_provider(routing: Stub, routed: ForgeApp, fake: FakeUpstream) -> None:
    good = await routing.TestProviderKey(routing_pb2.TestProviderKeyRequest(service=FAKE))
    assert (good.success, good.valid) == (True, True)
    assert good.details.model_count > 0 and good.details.service == FAKE
    assert "valid" in good.message
    tested = await status(routing, FAKE)
    assert tested.valid and tested.last_tested_at.seconds > 0

    configured_bad = await routing.TestProviderKey(routing_pb2.TestProviderKeyRequest(service=BADKEY))
    assert (configured_bad.success, configured_bad.valid) == (True, False)
    assert (await status(routing, BADKEY)).valid is False
    given_bad = await routing.TestProviderKey(routing_pb2.TestProviderKeyRequest(service=FAKE, api_key="bad-key"))
    assert (given_bad.success, given_bad.valid) == (True, False)
    assert (await status(routing, FAKE)).valid  # testing another key changes nothing about the configured one

    # `test: true` refuses a key the provider rejects, and stores nothing.
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await update(routing, FAKE, "bad-key", test=True)
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert await table_rows(routed, "SELECT service FROM provider_keys") == []
    fixed = await update(routing, BADKEY, "sk-a-working-key-0001", test=True)
    assert fixed.success and fixed.status.valid
    assert await key_seen(routed, fake, "badkey/gpt-f", "key-fixed") == "Bearer sk-a-working-key-0001"


@pytest.mark.parametrize(
    ("service", "key", "code"),
    [
        (FAKE, "", grpc.StatusCode.INVALID_ARGUMENT),
        (FAKE, "sk with spaces inside", grpc.StatusCode.INVALID_ARGUMENT),
        ("", "sk-something-long-enough", grpc.StatusCode.INVALID_ARGUMENT),
        ("nowhere", "sk-something-long-enough", grpc.StatusCode.NOT_FOUND),
        ("ollama", "sk-something-long-enough", grpc.StatusCode.FAILED_PRECONDITION),
    ],
)
async def test_bad_updates(routing: Stub, service: str, key: str, code: grpc.StatusCode) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await update(routing, service, key)
    assert err.value.code() == code
    assert not key or key not in (err.value.details() or "")


async def test_seed_rest_paths_never_echo_the_key(http: aiohttp.ClientSession) -> None:
    async with http.get(f"/api/api-keys/status/{FAKE}/") as resp:
        assert resp.status == 200
        shown = await resp.json()
    assert (shown["service"], shown["configured"], shown["source"]) == (FAKE, True, "config")
    async with http.post("/api/api-keys/test/", json={"service": FAKE, "api_key": "bad-key"}) as resp:
        assert resp.status == 200
        tested = await resp.json()
    assert (tested["success"], tested["valid"]) == (True, False)
    async with http.post("/api/api-keys/update/", json={"service": FAKE, "api_key": NEW_KEY}) as resp:
        assert resp.status == 200
        text = await resp.text()
    assert NEW_KEY not in text and '"success":true' in text.replace(" ", "")


async def test_generated_server_key_is_private_and_made_only_when_needed(fake: FakeUpstream, tmp_path: Path) -> None:
    from tests.routing.conftest import clear_routing_tables

    await clear_routing_tables()
    config = routing_config(fake, tmp_path, secret_key=None)
    key_file = tmp_path / "secret.key"
    try:
        async with running_forge(config, http=False) as app:
            assert not key_file.exists()
            async with grpc.aio.insecure_channel(f"127.0.0.1:{app.grpc_port}") as ch:
                await update(routing_pb2_grpc.RoutingServiceStub(ch), FAKE, NEW_KEY)
            assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
            generated = key_file.read_bytes()
        async with running_forge(config, http=False) as again:
            assert await key_seen(again, fake, "fake/gpt-g", "key-file") == f"Bearer {NEW_KEY}"
        assert key_file.read_bytes() == generated
    finally:
        await clear_routing_tables()
