"""The `retrain:` config section: file values, environment twins winning over them, defaults, clear errors."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from forge_rpc.server.config import ConfigError, RetrainConfig, load_config

SECTION = """
retrain:
  files_threshold: 5
  commits_threshold: 12
  critical_paths: [src/core/**, pyproject.toml]
  project_roots: [/srv/projects, ~/code]
  base_model: Qwen/Qwen2.5-0.5B-Instruct
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "forge.yaml"
    path.write_text(text)
    return path


def test_defaults_follow_seed_001() -> None:
    cfg = load_config(env={})
    assert cfg.retrain == RetrainConfig()
    assert cfg.retrain.files_threshold == 20 and cfg.retrain.commits_threshold == 0
    assert cfg.retrain.project_roots == () and cfg.retrain.critical_paths == ()


def test_the_file_section_is_read(tmp_path: Path) -> None:
    r = load_config(write(tmp_path, SECTION), env={}).retrain
    assert (r.files_threshold, r.commits_threshold) == (5, 12)
    assert r.critical_paths == ("src/core/**", "pyproject.toml")
    assert r.project_roots == (Path("/srv/projects"), Path("~/code").expanduser())
    assert r.base_model == "Qwen/Qwen2.5-0.5B-Instruct"


def test_environment_twins_win(tmp_path: Path) -> None:
    env = {
        "FORGE_RETRAIN_FILES_THRESHOLD": "7",
        "FORGE_RETRAIN_COMMITS_THRESHOLD": "0",
        "FORGE_RETRAIN_CRITICAL_PATHS": "api/**, schema.sql",
        "FORGE_PROJECT_ROOTS": os.pathsep.join(["/a", "/b"]),
        "FORGE_RETRAIN_BASE_MODEL": "org/model",
    }
    r = load_config(write(tmp_path, SECTION), env=env).retrain
    assert (r.files_threshold, r.commits_threshold) == (7, 0)
    assert r.critical_paths == ("api/**", "schema.sql")
    assert r.project_roots == (Path("/a"), Path("/b"))
    assert r.base_model == "org/model"


@pytest.mark.parametrize(
    ("text", "env", "message"),
    [
        ("retrain: {files_threshold: 0}", {}, "retrain.files_threshold must be at least 1"),
        ("retrain: {}", {"FORGE_RETRAIN_COMMITS_THRESHOLD": "many"}, "retrain.commits_threshold must be a whole"),
        ("retrain: {critical_paths: 3}", {}, "retrain.critical_paths must be a list of strings"),
        ("retrain: {project_roots: [1]}", {}, "retrain.project_roots must be a list of strings"),
        ("retrain: [1]", {}, "config section retrain must be a mapping"),
    ],
)
def test_bad_values_name_the_setting(tmp_path: Path, text: str, env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(write(tmp_path, text), env=env)
