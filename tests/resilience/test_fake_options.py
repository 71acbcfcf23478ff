"""The fake upstream's options these tests added: `fail_times` (fail the first N requests, then answer) and
`context_window` (OpenAI's 400 `context_length_exceeded` for longer prompts)."""

from __future__ import annotations

import aiohttp
import pytest

from tests.fakes import FakeUpstream, ScenarioError, fake_model, parse_model


async def post(fake: FakeUpstream, model: str, text: str = "hi") -> tuple[int, dict[str, object], dict[str, str]]:
    body = {"model": model, "messages": [{"role": "user", "content": text}]}
    async with (
        aiohttp.ClientSession() as http,
        http.post(f"{fake.openai_base}/chat/completions", json=body) as resp,
    ):
        return resp.status, await resp.json(), dict(resp.headers)


async def test_fail_times_fails_only_the_first_requests_of_a_model_string(fake: FakeUpstream) -> None:
    await fake.reset()
    flaky = fake_model("gpt-fake", fail=429, fail_times=2, retry_after=0.5)
    first, second, third = [await post(fake, flaky) for _ in range(3)]
    assert [first[0], second[0], third[0]] == [429, 429, 200]
    assert first[2]["Retry-After"] == "0.5"
    assert (await post(fake, fake_model("gpt-fake", fail=503, fail_times=1, tag="other")))[0] == 503
    await fake.reset()  # the count starts again
    assert (await post(fake, flaky))[0] == 429


async def test_context_window_refuses_longer_prompts_like_openai(fake: FakeUpstream) -> None:
    small = fake_model("gpt-fake", context_window=3)
    status, body, _ = await post(fake, small, "one two three four")
    assert status == 400
    error = body["error"]
    assert isinstance(error, dict)
    assert error["code"] == "context_length_exceeded"
    assert "maximum context length is 3 tokens" in str(error["message"])
    assert (await post(fake, small, "one two three"))[0] == 200


def test_fail_times_needs_a_status() -> None:
    with pytest.raises(ScenarioError, match="fail_times needs fail"):
        parse_model("gpt-fake@fail_times=2")
    assert parse_model(fake_model("m", fail=500, fail_times=1, context_window=9)).context_window == 9
