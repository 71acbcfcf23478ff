"""The pure parts: the progress protocol, the dataset checks and split, and the `training:` config section."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Any

import pytest

from forge_rpc.domain.datasets import DatasetError, read_examples, split_examples
from forge_rpc.domain.jobs import EventType, JobState, new_job_id, new_task_id
from forge_rpc.domain.progress import ProgressTracker, parse_line
from forge_rpc.server.config.errors import ConfigError
from forge_rpc.server.config.training import _default_command, parse_training


@pytest.mark.parametrize(
    ("line", "record"),
    [
        ('{"step": 3, "loss": 1.5}', True),
        ('  {"state": "training"}  ', True),
        ('{"learning_rate": 0.1}', True),  # any number is a metric
        ("Epoch 1: 100%|████| 30/30", False),
        ("{not json}", False),
        ('{"note": "words only"}', False),
        ("[1, 2]", False),
        ("", False),
    ],
)
def test_a_line_is_a_record_or_log_text(line: str, record: bool) -> None:
    assert (parse_line(line) is not None) is record


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_the_tracker_folds_records_into_status_events_and_eta() -> None:
    clock = Clock()
    t = ProgressTracker(JobState.PREPARING, clock=clock)

    def feed(text: str) -> list[Any]:
        record = parse_line(text)
        assert record is not None
        return t.apply(record)

    events = feed('{"state": "training", "total_steps": 100, "total_epochs": 2}')
    assert [e.type for e in events] == [EventType.STATE] and t.state is JobState.TRAINING
    feed('{"step": 10, "epoch": 1, "loss": 2.0}')
    clock.now += 10.0
    events = feed('{"step": 20, "epoch": 1, "loss": 1.0, "grad_norm": 0.5}')
    assert [e.type for e in events] == [EventType.PROGRESS]
    assert t.progress == 20.0 and t.status["eta_sec"] == 80 and t.status["metrics"]["grad_norm"] == 0.5
    assert events[0].step == 20 and events[0].loss == 1.0 and events[0].message == "step 20/100, loss 1"
    events = feed('{"checkpoint": "/ckpt/20", "step": 20}')
    assert [e.type for e in events] == [EventType.CHECKPOINT] and t.status["artifacts"]["checkpoint_path"] == "/ckpt/20"
    events = feed('{"artifact": "/out/adapter", "kind": "adapter"}')
    assert events[0].type is EventType.ARTIFACT and t.status["artifacts"]["adapter_path"] == "/out/adapter"
    events = feed('{"error": "CUDA out of memory"}')
    assert events[0].type is EventType.ERROR and t.error == "CUDA out of memory"
    assert not feed('{"state": "completed"}')  # only forge decides that a job completed
    assert t.state is JobState.TRAINING


def test_a_cancelling_job_does_not_go_back_to_training() -> None:
    t = ProgressTracker(JobState.CANCELLING)
    record = parse_line('{"state": "evaluating"}')
    assert record is not None
    assert not t.apply(record) and t.state is JobState.CANCELLING


def test_examples_of_every_shape_are_read_and_bad_lines_named() -> None:
    lines = [
        '{"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}',
        "",
        '{"prompt": "p", "completion": "c"}',
        '{"text": "plain"}',
    ]
    assert len(read_examples(lines, 1000)) == 3
    with pytest.raises(DatasetError) as info:
        read_examples([*lines, '{"prompt": "", "completion": "c"}'], 1000)
    assert info.value.line == 5 and "prompt" in str(info.value)
    with pytest.raises(DatasetError) as info:
        read_examples(['{"text": "' + "x" * 20 + '"}'], 10)
    assert info.value.line == 1 and "too long" in info.value.problem


def test_the_held_out_split_is_seeded_and_never_empties_training() -> None:
    data = [{"text": str(i)} for i in range(20)]
    train, held = split_examples(data, 0.1, seed=7)
    assert len(held) == 2 and len(train) == 18 and split_examples(data, 0.1, seed=7) == (train, held)
    assert split_examples(data[:1], 0.5, seed=1) == (data[:1], [])
    assert len(split_examples(data, 0.0, seed=1, max_examples=5)[0]) == 5


def test_ids_say_what_they_name_and_sort_by_time() -> None:
    assert new_job_id("fine_tune").startswith("job_") and new_job_id("retrain").startswith("agent_")
    assert new_task_id().startswith("task_") and new_task_id() != new_task_id()


def test_the_config_section_reads_file_and_environment() -> None:
    cfg = parse_training(
        {"worker_command": ["trainer", "--fast"], "worker_env": {"HF_HOME": "/hf"}, "lease_s": 10},
        {"FORGE_TASK_CONCURRENCY": "8", "FORGE_JWT_SECRET": "s" * 40, "PATH": "/bin"},
    )
    assert cfg.worker_command == ("trainer", "--fast") and cfg.lease_s == 10 and cfg.max_concurrent_tasks == 8
    assert cfg.worker_env["HF_HOME"] == "/hf" and cfg.worker_env["PATH"] == "/bin"
    assert "FORGE_JWT_SECRET" not in cfg.worker_env  # forge's secrets never reach a trainer
    env_command = parse_training({}, {"FORGE_TRAINING_COMMAND": "python3 -m my.trainer --x 'a b'"})
    assert env_command.worker_command == ("python3", "-m", "my.trainer", "--x", "a b")
    assert parse_training({}, {}).worker_command[1:] == ("-m", "forge_rpc.trainer")


def test_the_default_trainer_is_the_checkouts_runtime_when_this_python_lacks_torch(tmp_path: Path) -> None:
    runtime = tmp_path / "bin" / "python"
    # No runtime installed: this interpreter, whose trainer then names the missing extra in the job's error.
    assert _default_command(runtime) == (sys.executable, "-m", "forge_rpc.trainer")
    runtime.parent.mkdir()
    runtime.write_text("")
    has_torch = importlib.util.find_spec("torch") is not None
    expected = sys.executable if has_torch else str(runtime)
    assert _default_command(runtime) == (expected, "-m", "forge_rpc.trainer")


@pytest.mark.parametrize(
    ("section", "env", "message"),
    [
        ({"lease_s": "soon"}, {}, "training.lease_s"),
        ({"max_concurrent_jobs": -1}, {}, "max_concurrent_jobs"),
        ({"default_runner": "ray"}, {}, "ray_address"),
        ({"default_runner": "slurm"}, {}, "local or ray"),
        ({"worker_command": []}, {}, "worker_command"),
        ({}, {"FORGE_TRAINING_WORKER": "maybe"}, "FORGE_TRAINING_WORKER"),
    ],
)
def test_a_bad_config_names_the_setting(section: dict[str, Any], env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_training(section, env)
    assert message in str(info.value)
