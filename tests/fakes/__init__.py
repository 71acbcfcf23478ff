"""Fake upstream LLM provider (OpenAI, Anthropic and Ollama wire formats).

Tests drive forge through the real client libraries against this fake; the
per-request behaviour is encoded in the model name (see scenario.py), e.g.
``fake_model("gpt-fake", tokens=50, gap_ms=20, tag="t1")``.
"""

from .process import FakeUpstream
from .scenario import Scenario, ScenarioError, fake_model, parse_model

__all__ = ["FakeUpstream", "Scenario", "ScenarioError", "fake_model", "parse_model"]
