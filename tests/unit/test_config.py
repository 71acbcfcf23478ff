"""Configuration: LiteLLM's model_list format unchanged, env twins for every scalar, clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from forge_rpc.server.compose_engine import configured_models
from forge_rpc.server.config import ConfigError, load_config

LITELLM_CONFIG = """
model_list:
  - model_name: gpt-4o
    litellm_params:
      model: openai/gpt-4o
      api_key: os.environ/MY_OPENAI_KEY
      rpm: 100
  - model_name: local-llama
    litellm_params:
      model: ollama/llama3.2
      api_base: http://gpu-box:11434
  - model_name: gemini
    litellm_params:
      model: gemini/gemini-2.0-flash
litellm_settings:
  drop_params: true
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "forge.yaml"
    path.write_text(text)
    return path


def test_litellm_model_list_is_read_unchanged(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, LITELLM_CONFIG), env={"MY_OPENAI_KEY": "sk-1"})
    names = [d.model_name for d in cfg.providers.deployments]
    assert names == ["gpt-4o", "local-llama", "gemini"]
    gpt = cfg.providers.deployments[0]
    assert (gpt.api_key, gpt.env_var, gpt.rpm) == ("sk-1", "MY_OPENAI_KEY", 100)
    models = configured_models(cfg.providers.deployments)
    adapters = {m.model_name: (m.spec.adapter, m.spec.kind, m.upstream_model) for m in models}
    assert adapters == {
        "gpt-4o": ("openai", "openai", "gpt-4o"),
        "local-llama": ("ollama", "ollama", "llama3.2"),
        "gemini": ("litellm", "gemini", "gemini/gemini-2.0-flash"),
    }


def test_missing_env_reference_names_the_variable(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="MY_OPENAI_KEY"):
        load_config(write(tmp_path, LITELLM_CONFIG), env={})


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("model_list: {}", "must be a list"),
        ("model_list:\n  - litellm_params: {model: openai/x}", "model_name"),
        ("model_list:\n  - model_name: a", "needs model"),
        ("[1, 2", "not valid YAML"),
        ("- a\n- b", "must be a mapping"),
    ],
)
def test_bad_files_get_clear_errors(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(write(tmp_path, text), env={})


def test_env_twins_and_flags_override_in_order(tmp_path: Path) -> None:
    path = write(tmp_path, "grpc: {port: 6000}\nhttp: {port: 7000}\n")
    cfg = load_config(path, env={"FORGE_GRPC_PORT": "6001", "FORGE_DATA_DIR": str(tmp_path / "d")})
    assert (cfg.grpc.port, cfg.http.port, cfg.data_dir) == (6001, 7000, tmp_path / "d")
    cfg = load_config(path, env={"FORGE_GRPC_PORT": "6001"}, grpc_port=6002, http_port=7002)
    assert (cfg.grpc.port, cfg.http.port) == (6002, 7002)


def test_bad_port_env_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="FORGE_GRPC_PORT"):
        load_config(env={"FORGE_GRPC_PORT": "fifty"})


def test_provider_keys_from_env_add_wildcard_routes() -> None:
    cfg = load_config(env={"OPENAI_API_KEY": "sk-x", "GEMINI_API_KEY": "g", "OLLAMA_HOST": "10.0.0.5:11434"})
    wild = {d.model_name: d for d in cfg.providers.deployments}
    assert set(wild) == {"openai/*", "gemini/*"}
    assert wild["openai/*"].env_var == "OPENAI_API_KEY"
    assert cfg.providers.ollama_host == "http://10.0.0.5:11434"


def test_defaults_need_nothing() -> None:
    cfg = load_config(env={})
    assert (cfg.grpc.port, cfg.http.port) == (50051, 8000)
    assert cfg.providers.deployments == ()
    assert cfg.providers.ollama_host == "http://localhost:11434"


def test_usage_section_prices_quotas_and_content_logging(tmp_path: Path) -> None:
    path = tmp_path / "forge.yaml"
    path.write_text(
        "model_list:\n"
        "  - model_name: tuned\n"
        "    litellm_params: {model: openai/ft-1}\n"
        "    model_info: {input_cost_per_token: 0.000002, output_cost_per_token: 0.000004}\n"
        "usage:\n"
        "  token_quota: 1000\n"
        "  token_quotas: {alice: 50}\n"
        "  prices: {cheap: {input_cost_per_token: 0.0000001}}\n"
    )
    cfg = load_config(path, env={"FORGE_LOG_CONTENT": "true"})
    assert cfg.usage.log_content is True
    assert cfg.usage.token_quota == 1000
    assert cfg.usage.token_quotas == {"alice": 50}
    assert cfg.usage.prices == {"tuned": (0.000002, 0.000004), "cheap": (0.0000001, 0.0)}
    assert load_config(env={}).usage.log_content is False


def test_usage_section_rejects_bad_values(tmp_path: Path) -> None:
    path = tmp_path / "forge.yaml"
    path.write_text("usage:\n  prices: {m: {input_cost_per_token: lots}}\n")
    with pytest.raises(ConfigError, match=r"usage\.prices\.m"):
        load_config(path, env={})


def test_litellm_weight_reaches_the_deployment(tmp_path: Path) -> None:
    path = tmp_path / "forge.yaml"
    path.write_text(
        "model_list:\n"
        "  - model_name: duo\n"
        "    litellm_params: {model: openai/a, weight: 3}\n"
        "  - model_name: duo\n"
        "    litellm_params: {model: openai/b}\n"
    )
    cfg = load_config(path, env={})
    assert [d.weight for d in cfg.providers.deployments] == [3.0, None]
    models = configured_models(cfg.providers.deployments)
    assert models[0].info["weight"] == 3.0
    assert "weight" not in models[1].info
