"""Model groups in the catalog, and the three ways a group picks a deployment."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from forge_rpc.domain import Deployment, ModelCatalog
from forge_rpc.domain.balancing import LeastBusy, LoadTracker, LowestLatency, SimpleShuffle, balancer_named
from forge_rpc.domain.catalog import Candidate, ModelGroup


def group(*infos: dict[str, object]) -> ModelGroup:
    deployments = [Deployment("g", f"p{i}", f"m{i}", dict(info)) for i, info in enumerate(infos)]
    found = ModelCatalog(deployments).group("g")
    assert found is not None
    return found


def test_entries_sharing_a_name_form_one_group_with_stable_ids() -> None:
    catalog = ModelCatalog(
        [
            Deployment("openai/gpt-4o-mini", "openai-1", "gpt-4o-mini"),
            Deployment("openai/gpt-4o-mini", "azure-2", "gpt-4o-mini"),
            Deployment("openai/gpt-4o-mini", "openai-1", "gpt-4o-mini"),  # the same deployment again
            Deployment("named", "openai-1", "x", {"id": "My Deployment"}),
            Deployment("fake/*", "openai-1", "*"),
            Deployment("fake/*", "azure-2", "*"),
        ]
    )
    g = catalog.group("openai/gpt-4o-mini")
    assert g is not None
    assert [(c.id, c.route.deployment.provider_id) for c in g.candidates] == [
        ("openai-gpt-4o-mini-0", "openai-1"),
        ("openai-gpt-4o-mini-1", "azure-2"),
    ]
    assert catalog.find("openai/gpt-4o-mini") == g.candidates[0].route  # one route for callers wanting one
    assert catalog.group("named") == ModelGroup("named", (Candidate("my-deployment", catalog.resolve("named")),))
    wild = catalog.group("fake/gpt-x")
    assert wild is not None
    assert [(c.id, c.route.upstream_model) for c in wild.candidates] == [
        ("fake-any-0", "gpt-x"),
        ("fake-any-1", "gpt-x"),
    ]
    assert catalog.names() == ["openai/gpt-4o-mini", "named", "fake/*"]
    assert [k for k, _ in catalog.members()] == [
        "openai-gpt-4o-mini-0",
        "openai-gpt-4o-mini-1",
        "my-deployment",
        "fake-any-0",
        "fake-any-1",
    ]
    assert catalog.by_id("openai-gpt-4o-mini-1") == Deployment("openai/gpt-4o-mini", "azure-2", "gpt-4o-mini")


def test_names_that_slug_alike_still_get_distinct_ids() -> None:
    catalog = ModelCatalog([Deployment("a/b", "p", "m"), Deployment("a-b", "p", "m")])
    assert [k for k, _ in catalog.members()] == ["a-b-0", "a-b-0-2"]


def test_shuffle_follows_weight_then_rpm_then_tpm() -> None:
    g = group({"weight": 3, "rpm": 1}, {"rpm": 1000}, {"tpm": 10_000}, {})
    shuffle = SimpleShuffle(random.Random(7))
    load = LoadTracker()
    picks = Counter(shuffle.pick(g.candidates, load).id for _ in range(20_000))
    total = 3 + 1000 + 10_000 + 1
    for c, weight in zip(g.candidates, (3, 1000, 10_000, 1), strict=True):
        assert picks[c.id] / 20_000 == pytest.approx(weight / total, abs=0.01)


def test_shuffle_without_weights_spreads_evenly() -> None:
    g = group({}, {})
    shuffle = SimpleShuffle(random.Random(1))
    picks = Counter(shuffle.pick(g.candidates, LoadTracker()).id for _ in range(4000))
    assert set(picks) == {"g-0", "g-1"}
    assert abs(picks["g-0"] - picks["g-1"]) < 400


def test_least_busy_takes_the_fewest_in_flight() -> None:
    g = group({}, {}, {})
    load = LoadTracker()
    least = LeastBusy(random.Random(3))
    load.started("g-0")
    load.started("g-0")
    load.started("g-1")
    assert least.pick(g.candidates, load).id == "g-2"
    load.started("g-2")
    load.started("g-2")
    assert least.pick(g.candidates, load).id == "g-1"
    load.ended("g-0")
    load.ended("g-0")
    load.ended("g-0")  # never below zero
    assert load.in_flight("g-0") == 0
    assert least.pick(g.candidates, load).id == "g-0"


def test_least_busy_breaks_ties_at_random() -> None:
    g = group({}, {})
    least = LeastBusy(random.Random(5))
    assert {least.pick(g.candidates, LoadTracker()).id for _ in range(50)} == {"g-0", "g-1"}


def test_lowest_latency_measures_every_deployment_then_prefers_the_fastest() -> None:
    g = group({}, {}, {})
    load = LoadTracker()
    fastest = LowestLatency()
    assert fastest.pick(g.candidates, load).id == "g-0"
    load.observe("g-0", 300.0)
    assert fastest.pick(g.candidates, load).id == "g-1"
    load.observe("g-1", 100.0)
    load.observe("g-2", 200.0)
    assert fastest.pick(g.candidates, load).id == "g-1"
    # A moving average: one slow call does not outweigh a record, a run of them does.
    load.observe("g-1", 400.0)
    assert load.latency_ms("g-1") == pytest.approx(160.0)
    assert fastest.pick(g.candidates, load).id == "g-1"
    for _ in range(5):
        load.observe("g-1", 400.0)
    assert fastest.pick(g.candidates, load).id == "g-2"


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("simple-shuffle", SimpleShuffle),
        ("usage-based-routing-v2", SimpleShuffle),
        ("least-busy", LeastBusy),
        ("latency-based-routing", LowestLatency),
    ],
)
def test_strategies_go_by_litellm_names(name: str, kind: type) -> None:
    assert isinstance(balancer_named(name), kind)
