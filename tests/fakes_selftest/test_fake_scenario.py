"""Pure tests of model-name option parsing (no server needed)."""

from __future__ import annotations

import pytest

from tests.fakes import Scenario, ScenarioError, fake_model, parse_model


def test_scenario_round_trip() -> None:
    model = fake_model("gpt-fake", tokens=50, gap_ms=20, ttft_ms=300, tag="t1")
    sc = parse_model(model)
    assert sc == Scenario(base="gpt-fake", tokens=50, gap_ms=20, ttft_ms=300, tag="t1")
    assert parse_model(sc.model_name()) == sc
    assert parse_model("claude@20240229") == Scenario(base="claude@20240229")
    assert parse_model("m", {"tokens": "3", "pull_steps": "2"}).tokens == 3
    assert parse_model("m@tokens=4", {"tokens": "3"}).tokens == 4


@pytest.mark.parametrize("model", ["m@ttft=3", "m@tokens=x", "m@fail=200", "m@gap_ms=-1"])
def test_scenario_rejects_bad_options(model: str) -> None:
    with pytest.raises(ScenarioError):
        parse_model(model)
