"""The shipped example configuration loads as documented."""

from __future__ import annotations

from pathlib import Path

from forge_rpc.server.config import load_config

EXAMPLE = Path(__file__).resolve().parents[2] / "deploy" / "forge.example.yaml"


def test_example_config_loads() -> None:
    env = {"OPENAI_API_KEY": "a", "DEEPSEEK_API_KEY": "b", "GEMINI_API_KEY": "c"}
    cfg = load_config(EXAMPLE, env=env)
    names = {d.model_name for d in cfg.providers.deployments}
    assert {"gpt-4o-mini", "deepseek-chat", "gemini-flash"} <= names
    assert cfg.providers.default_model == "gpt-4o-mini"
    assert cfg.grpc.shutdown_grace_s == 10


def test_example_config_sections() -> None:
    env = {"OPENAI_API_KEY": "a", "DEEPSEEK_API_KEY": "b", "GEMINI_API_KEY": "c"}
    cfg = load_config(EXAMPLE, env=env)
    assert cfg.router.num_retries == 2
    assert cfg.limits.anonymous.rpm == 100
    assert cfg.limits.anonymous_without_auth is True
    assert cfg.limits.cache.enabled is True
    assert cfg.usage.token_quota == 5_000_000
    assert cfg.auth.enabled is False
