"""`router_settings:` in LiteLLM's format, its environment twins, and what a bad value says."""

from __future__ import annotations

from pathlib import Path

import pytest

from forge_rpc.domain import (
    ErrorCode,
    FieldViolation,
    ForgeError,
    InvalidArgument,
    ProviderAuthError,
    ProviderProtocolError,
    ProviderRateLimited,
    ProviderUnavailable,
)
from forge_rpc.domain.retry import FailureKind, Fallbacks, classify, is_context_window_exceeded
from forge_rpc.server.compose_engine import build_failover, configured_models
from forge_rpc.server.config import ConfigError, RouterConfig, load_config

LITELLM = """
model_list:
  - model_name: gpt-4o
    litellm_params: {model: openai/gpt-4o, rpm: 600}
  - model_name: gpt-4o
    litellm_params: {model: azure/gpt-4o, api_base: "https://x.openai.azure.com", tpm: 90000}
    model_info: {id: azure-east, weight: 2}
  - model_name: claude
    litellm_params: {model: anthropic/claude-3-5-sonnet}
router_settings:
  routing_strategy: least-busy
  num_retries: 2
  retry_after: 0.5
  timeout: 30
  allowed_fails: 4
  cooldown_time: 45
  fallbacks: [{"gpt-4o": ["claude"]}]
  context_window_fallbacks: [{"gpt-4o": ["claude"]}, {"claude": "gpt-4o"}]
  default_fallbacks: ["claude"]
  redis_host: localhost
  enable_pre_call_checks: true
"""


def load(tmp_path: Path, text: str, env: dict[str, str] | None = None) -> RouterConfig:
    path = tmp_path / "forge.yaml"
    path.write_text(text)
    return load_config(path, env=env or {}).router


def test_litellm_router_settings_are_read(tmp_path: Path) -> None:
    r = load(tmp_path, LITELLM)
    assert r == RouterConfig(
        routing_strategy="least-busy",
        num_retries=2,
        retry_after=0.5,
        timeout=30.0,
        fallbacks={"gpt-4o": ("claude",)},
        context_window_fallbacks={"gpt-4o": ("claude",), "claude": ("gpt-4o",)},
        default_fallbacks=("claude",),
        allowed_fails=4,
        cooldown_time=45.0,
    )
    failover = build_failover(r)
    assert failover.breakers.policy.failure_threshold == 4
    assert failover.breakers.policy.cooldown_s == 45.0
    assert (failover.retry.num_retries, failover.retry.min_wait_s, failover.retry.timeout_s) == (2, 0.5, 30.0)
    assert failover.fallbacks.chain("other", FailureKind.RETRY) == ("claude",)


def test_rpm_tpm_and_model_info_weigh_deployments(tmp_path: Path) -> None:
    path = tmp_path / "forge.yaml"
    path.write_text(LITELLM)
    models = configured_models(load_config(path, env={}).providers.deployments)
    assert [m.info for m in models] == [{"rpm": 600}, {"tpm": 90000, "id": "azure-east", "weight": 2}, {}]


def test_defaults_keep_one_attempt_and_breakers_on() -> None:
    r = load_config(env={}).router
    assert (r.routing_strategy, r.num_retries, r.allowed_fails, r.cooldown_time) == ("simple-shuffle", 0, 3, 5.0)
    assert r.fallbacks == {} and r.timeout is None


def test_environment_wins(tmp_path: Path) -> None:
    env = {
        "FORGE_ROUTING_STRATEGY": "latency-based-routing",
        "FORGE_NUM_RETRIES": "5",
        "FORGE_ALLOWED_FAILS": "1",
        "FORGE_COOLDOWN_TIME": "2.5",
        "FORGE_ROUTER_TIMEOUT": "9",
        "FORGE_MAX_RETRY_WAIT": "3",
    }
    r = load(tmp_path, LITELLM, env)
    assert (r.routing_strategy, r.num_retries, r.allowed_fails, r.cooldown_time) == ("latency-based-routing", 5, 1, 2.5)
    assert (r.timeout, r.max_retry_wait) == (9.0, 3.0)


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ("routing_strategy: fastest", "routing_strategy 'fastest' is not one of"),
        ("num_retries: lots", "num_retries must be a whole number"),
        ("num_retries: -1", "must not be negative"),
        ("cooldown_time: true", "cooldown_time must be a number"),
        ("allowed_fails: 0", "allowed_fails must be at least 1"),
        ("timeout: 0", "timeout must be positive"),
        ("fallbacks: [gpt-4o]", r"fallbacks\[0\] must map a model group"),
        ("fallbacks: [{gpt-4o: [1, 2]}]", r"fallbacks\[0\].gpt-4o must be a list of model group names"),
        ("default_fallbacks: {a: b}", "default_fallbacks must be a list"),
    ],
)
def test_bad_settings_name_the_setting(tmp_path: Path, settings: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load(tmp_path, f"router_settings:\n  {settings}\n")


def test_a_bad_environment_value_names_the_variable() -> None:
    with pytest.raises(ConfigError, match="FORGE_NUM_RETRIES must be a whole number"):
        load_config(env={"FORGE_NUM_RETRIES": "two"})


@pytest.mark.parametrize(
    ("error", "kind"),
    [
        (ProviderUnavailable("openai", "HTTP 503"), FailureKind.RETRY),
        (ProviderRateLimited("openai", 2.0, "HTTP 429"), FailureKind.RETRY),
        (ProviderProtocolError("openai", "stream cut"), FailureKind.RETRY),
        (ProviderAuthError("openai", "OPENAI_API_KEY", "HTTP 401"), FailureKind.FINAL),
        (InvalidArgument([FieldViolation("chat.temperature", "too hot")]), FailureKind.FINAL),
        (ForgeError("did not answer in time", ErrorCode.DEADLINE_EXCEEDED, "DEADLINE_EXCEEDED"), FailureKind.FINAL),
        (
            ForgeError(
                "rejected: litellm.ContextWindowExceededError: prompt too big",
                ErrorCode.INVALID_ARGUMENT,
                "INVALID_ARGUMENT",
            ),
            FailureKind.CONTEXT,
        ),
        (
            InvalidArgument([FieldViolation("chat.messages", "the local model's context holds 2048")]),
            FailureKind.CONTEXT,
        ),
    ],
)
def test_failures_are_classified_by_what_another_attempt_could_change(error: ForgeError, kind: FailureKind) -> None:
    assert classify(error) is kind


def test_a_timeout_is_retried_only_when_it_is_the_routers_own() -> None:
    late = ForgeError("did not answer in time", ErrorCode.DEADLINE_EXCEEDED, "DEADLINE_EXCEEDED")
    assert classify(late, timed_out_by_router=True) is FailureKind.RETRY


def test_context_words_from_providers() -> None:
    for text in (
        "This model's maximum context length is 8192 tokens",
        "prompt is too long: 210000 tokens > 200000 maximum",
        "the request exceeds the context window",
    ):
        assert is_context_window_exceeded(ForgeError(text, ErrorCode.INVALID_ARGUMENT, "INVALID_ARGUMENT"))
    assert not is_context_window_exceeded(ForgeError("temperature too hot", ErrorCode.INVALID_ARGUMENT))
    assert not is_context_window_exceeded(ProviderUnavailable("x", "maximum context length"))


def test_fallback_chains() -> None:
    chains = Fallbacks({"a": ("b", "c")}, {"a": ("big",)}, default=("d",))
    assert chains.chain("a", FailureKind.RETRY) == ("b", "c")
    assert chains.chain("a", FailureKind.CONTEXT) == ("big",)
    assert chains.chain("z", FailureKind.CONTEXT) == ("d",)
