"""Fallback chains and retry waits through a real forge: on 503, on 429 (honouring Retry-After up to the cap),
and on a prompt too long for the model's window."""

from __future__ import annotations

import grpc
import pytest
from forge.chat.v1 import chat_pb2
from google.rpc import error_details_pb2

from forge_rpc.server.config import DeploymentConfig, RouterConfig
from forge_rpc.testing import running_forge
from tests.fakes import FakeUpstream
from tests.resilience.conftest import ask, at_fake, group_config, streamed, unary
from tests.rpc.rich_status import detail, reason

LONG = "one two three four five six seven eight nine ten eleven twelve"


async def served_by(
    fake: FakeUpstream,
    deployments: list[DeploymentConfig],
    router: RouterConfig,
    chat: chat_pb2.ChatRequest,
    stream: bool,
) -> str:
    """The model that answered (the group's name), as the caller sees it."""
    await fake.reset()
    async with (
        running_forge(group_config(fake, deployments, router), http=False) as app,
        grpc.aio.insecure_channel(f"127.0.0.1:{app.grpc_port}") as channel,
    ):
        if stream:
            return (await streamed(channel, chat))[-1].finish.model
        return (await unary(channel, chat)).model


async def tags(fake: FakeUpstream) -> list[str]:
    return [str(r["tag"]) for r in await fake.requests() if r["path"] == "/v1/chat/completions"]


@pytest.mark.parametrize("stream", [False, True])
async def test_unavailable_group_falls_back_along_the_chain(fake: FakeUpstream, stream: bool) -> None:
    deployments = [
        at_fake(fake, "primary", "gpt-fake", fail=503, tag="primary"),
        at_fake(fake, "second", "gpt-fake", fail=500, tag="second"),
        at_fake(fake, "backup", "gpt-fake", tag="backup"),
    ]
    router = RouterConfig(fallbacks={"primary": ("ghost", "second", "backup")})
    assert await served_by(fake, deployments, router, ask("primary"), stream) == "backup"
    assert await tags(fake) == ["primary", "second", "backup"]


@pytest.mark.parametrize("stream", [False, True])
async def test_rate_limited_group_asking_too_long_a_pause_falls_back_at_once(fake: FakeUpstream, stream: bool) -> None:
    deployments = [
        at_fake(fake, "primary", "gpt-fake", fail=429, retry_after=30, tag="primary"),
        at_fake(fake, "backup", "gpt-fake", tag="backup"),
    ]
    router = RouterConfig(num_retries=2, max_retry_wait=5, fallbacks={"primary": ("backup",)})
    assert await served_by(fake, deployments, router, ask("primary"), stream) == "backup"
    assert await tags(fake) == ["primary", "backup"]


@pytest.mark.parametrize("stream", [False, True])
async def test_prompt_too_long_takes_the_context_window_chain(fake: FakeUpstream, stream: bool) -> None:
    deployments = [
        at_fake(fake, "small", "gpt-fake", context_window=5, tag="small"),
        at_fake(fake, "other", "gpt-fake", tag="other"),
        at_fake(fake, "large", "gpt-fake", context_window=100, tag="large"),
    ]
    router = RouterConfig(
        num_retries=2, fallbacks={"small": ("other",)}, context_window_fallbacks={"small": ("large",)}
    )
    assert await served_by(fake, deployments, router, ask("small", LONG), stream) == "large"
    assert await tags(fake) == ["small", "large"]  # no retry: the same window would refuse the same prompt
    assert await served_by(fake, deployments, router, ask("small", "short"), stream) == "small"


async def test_retry_honours_the_upstreams_retry_after(fake: FakeUpstream) -> None:
    deployments = [at_fake(fake, "busy", "gpt-fake", fail=429, fail_times=1, retry_after=0.4, tag="busy")]
    assert await served_by(fake, deployments, RouterConfig(num_retries=1), ask("busy"), False) == "busy"
    first, second = [r for r in await fake.requests() if r["tag"] == "busy"]
    assert (first["status"], second["status"]) == (429, 200)
    assert 0.4 <= second["started"] - first["started"] < 2.0


async def test_a_retry_after_beyond_the_cap_surfaces_the_429_at_once(fake: FakeUpstream) -> None:
    await fake.reset()
    deployments = [at_fake(fake, "busy", "gpt-fake", fail=429, retry_after=30, tag="busy")]
    router = RouterConfig(num_retries=3, max_retry_wait=1)
    async with (
        running_forge(group_config(fake, deployments, router), http=False) as app,
        grpc.aio.insecure_channel(f"127.0.0.1:{app.grpc_port}") as channel,
    ):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await unary(channel, ask("busy"))
    assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert reason(caught.value) == "PROVIDER_RATE_LIMITED"
    assert await tags(fake) == ["busy"]


async def test_when_the_whole_chain_fails_the_last_error_says_how_many_attempts(fake: FakeUpstream) -> None:
    await fake.reset()
    deployments = [
        at_fake(fake, "primary", "gpt-fake", fail=503, tag="primary"),
        at_fake(fake, "backup", "gpt-fake", fail=500, tag="backup"),
    ]
    router = RouterConfig(num_retries=1, fallbacks={"primary": ("backup",)}, allowed_fails=10)
    async with (
        running_forge(group_config(fake, deployments, router), http=False) as app,
        grpc.aio.insecure_channel(f"127.0.0.1:{app.grpc_port}") as channel,
    ):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await streamed(channel, ask("primary"))
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    assert detail(caught.value, error_details_pb2.ErrorInfo).metadata["attempts"] == "4"
    assert await tags(fake) == ["primary", "primary", "backup", "backup"]
