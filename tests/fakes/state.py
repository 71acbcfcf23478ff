"""Process-wide mutable state of the fake and typed accessors for handlers.

Lives in its own module so every route module can reach the state without
importing the server (which imports them: that would be a cycle).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Final

from aiohttp import web

from .ollama_store import ModelStore
from .recorder import Recorder, RequestRecord
from .scenario import PullPacing, Scenario, parse_model


@dataclass(slots=True)
class FakeState:
    recorder: Recorder = field(default_factory=Recorder)
    models: ModelStore = field(default_factory=ModelStore)
    # Raw option strings from POST /_control/defaults (already validated).
    defaults: dict[str, str] = field(default_factory=dict)
    # Requests seen per exact model string, for ``fail_times``.
    seen: Counter[str] = field(default_factory=Counter)

    def reset(self) -> None:
        self.recorder.reset()
        self.models.reset()
        self.defaults.clear()
        self.seen.clear()

    def scenario(self, model: str) -> Scenario:
        return parse_model(model, self.defaults)

    def pull_pacing(self) -> PullPacing:
        return PullPacing.from_defaults(self.defaults)


STATE: Final = web.AppKey("fake_state", FakeState)
# Plain string key: aiohttp's typed RequestKey is too new to rely on.
_RECORD: Final = "fake.record"


def state_of(request: web.Request) -> FakeState:
    return request.app[STATE]


def attach_record(request: web.Request, rec: RequestRecord) -> None:
    request[_RECORD] = rec


def record_of(request: web.Request) -> RequestRecord:
    rec = request[_RECORD]
    assert isinstance(rec, RequestRecord)
    return rec
