"""The pure parts of routing, and the pieces with no server around them: rule matching, key masking, the
secret box, service naming, the routing config section, config rendering, and the directory's swaps."""

from __future__ import annotations

from pathlib import Path
from typing import cast

import pytest
from forge.routing.v1 import routing_pb2

from forge_rpc.adapters.providers.directory import ConfiguredModel, ProviderDirectory
from forge_rpc.adapters.providers.factory import ProviderSpec
from forge_rpc.adapters.providers.service_view import assign_names
from forge_rpc.adapters.secrets import SecretBox, SecretError, ServerKey
from forge_rpc.adapters.store.routing_store import RoutingStore
from forge_rpc.domain import ErrorCode, ForgeError
from forge_rpc.domain.identity import Principal, Role
from forge_rpc.domain.routing_rules import RouteQuery, RouteTarget, RoutingRule, RuleSet, TaskType, rule_violations
from forge_rpc.server.config import ConfigError
from forge_rpc.server.config.routing import parse_routing
from forge_rpc.server.config_control import _mask_url, _masked
from forge_rpc.services.context import CallContext, principal
from forge_rpc.services.key_vault import KeyVault
from forge_rpc.services.provider_keys import ProviderKeysServicer, mask_key
from forge_rpc.services.routing_rules import RoutingRulesServicer
from forge_rpc.services.rule_book import RuleBook


def test_first_matching_rule_by_priority_then_creation() -> None:
    rules = RuleSet(
        [
            RoutingRule("late", "b", priority=5, position=2),
            RoutingRule("meta", "c", priority=5, position=1, match_metadata={"team": "ml", "tier": "gold"}),
            RoutingRule("code", "a", task_type=TaskType.CODE_GENERATION, priority=1),
            RoutingRule("off", "z", priority=0, enabled=False),
            RoutingRule("gpt4", "d", priority=3, match_model="gpt-4*"),
        ]
    )
    assert [r.id for r in rules] == ["off", "code", "gpt4", "meta", "late"]
    first = rules.first_match
    assert first(RouteQuery(TaskType.CODE_GENERATION)).id == "code"  # type: ignore[union-attr]
    assert first(RouteQuery(TaskType.CHAT, "gpt-4o")).id == "gpt4"  # type: ignore[union-attr]
    assert first(RouteQuery(TaskType.CHAT, metadata={"team": "ml"})).id == "late"  # type: ignore[union-attr]
    both = RouteQuery(TaskType.CHAT, metadata={"team": "ml", "tier": "gold", "x": "y"})
    assert first(both).id == "meta"  # type: ignore[union-attr]
    assert RuleSet([RoutingRule("only-code", "a", task_type=TaskType.CODE_REVIEW)]).first_match(RouteQuery()) is None
    assert "team=ml" in rules.get("meta").describe()  # type: ignore[union-attr]


def test_rule_violations_name_every_bad_field() -> None:
    bad = RoutingRule(
        "bad id", " ", priority=0, match_metadata={"": "x"}, fallbacks=(RouteTarget(""),) * 9, name="n" * 201
    )
    fields = {v.field for v in rule_violations(bad)}
    assert {"rule.id", "rule.service", "rule.priority", "rule.match_metadata", "rule.fallbacks", "rule.name"} <= fields
    assert "rule.fallbacks[0].service" in fields
    assert rule_violations(RoutingRule("", "svc")) == []  # an empty id is the store's to assign


def test_mask_key_never_shows_enough_to_use() -> None:
    assert mask_key("sk-proj-abcdefghijklmnopqrstuvwxyz") == "sk-…wxyz"
    assert mask_key("abcdefghij") == "…ij"
    assert mask_key("sk-test") == "…"


def test_secret_box_binds_values_to_their_purpose_and_key() -> None:
    box = SecretBox(b"k" * 32)
    sealed = box.seal("sk-live-123", "service-a")
    assert b"sk-live-123" not in sealed
    assert box.seal("sk-live-123", "service-a") != sealed  # a fresh nonce each time
    assert box.open(sealed, "service-a") == "sk-live-123"
    with pytest.raises(SecretError):
        box.open(sealed, "service-b")  # a row copied onto another service does not open
    with pytest.raises(SecretError):
        SecretBox(b"j" * 32).open(sealed, "service-a")
    with pytest.raises(SecretError):
        box.open(sealed[:-1] + bytes([sealed[-1] ^ 1]), "service-a")
    assert SecretBox(b"k" * 32).key_id == box.key_id != SecretBox(b"j" * 32).key_id


def spec(kind: str, base: str, key: str | None = "k", service: str = "") -> ProviderSpec:
    return ProviderSpec(kind, "openai", base, key, f"{kind.upper()}_API_KEY", service)


def test_service_names() -> None:
    names = assign_names(
        {
            "openai-1": spec("openai", "http://a"),
            "openai-2": spec("openai", "http://b"),
            "deepseek-3": spec("deepseek", "http://c"),
            "openai-4": spec("openai", "http://d", service="openrouter"),
            "openai-5": spec("openai", "http://e", service="openrouter"),
        }
    )
    assert names == {
        "openai-1": "openai-1",
        "openai-2": "openai-2",
        "deepseek-3": "deepseek",
        "openai-4": "openrouter",
        "openai-5": "openrouter-openai-5",
    }


def test_routing_section() -> None:
    secret = "s" * 32
    cfg = parse_routing({"rule_cache_ttl_s": 2}, {"FORGE_SECRET_KEY": secret, "FORGE_CONFIG": "/etc/forge.yaml"})
    assert (cfg.secret_key, cfg.rule_cache_ttl_s, str(cfg.config_path)) == (secret, 2.0, "/etc/forge.yaml")
    assert secret not in repr(cfg)
    cases: list[tuple[dict[str, object], dict[str, str]]] = [
        ({"secret_key": "short"}, {}),
        ({}, {"FORGE_ROUTING_REFRESH_S": "soon"}),
        ({"rule_cache_ttl_s": 0}, {}),
        ({"rules": []}, {}),
    ]
    for section, env in cases:
        with pytest.raises(ConfigError):
            parse_routing(section, env)


def test_rendering_masks_secrets_and_url_passwords() -> None:
    assert _mask_url("postgresql://forge:hunter2@db:5432/forge") == "postgresql://forge:****@db:5432/forge"
    assert _mask_url("http://host:1/v1") == "http://host:1/v1"
    shown = _masked({"jwt_secret": "j" * 40, "api_key": "sk-x", "key_prefix": "forge:", "tokens_per_minute": 5})
    assert shown == {"jwt_secret": "****", "api_key": "****", "key_prefix": "forge:", "tokens_per_minute": 5}


def models(*entries: tuple[str, str, str | None]) -> list[ConfiguredModel]:
    return [ConfiguredModel(name, "*", spec("openai", base, key)) for name, base, key in entries]


async def test_directory_swaps_without_closing_what_streams_use() -> None:
    d = ProviderDirectory(
        models(("a/*", "http://a", "ka"), ("b/*", "http://b", "kb")),
        ollama_host="http://127.0.0.1:9",
        discover_ollama=False,
        default_model=None,
    )
    live = d.providers  # the engine's reference: must stay the same dict
    a, b = live["openai-1"], live["openai-2"]
    d.set_api_key("openai-1", "ka-new")
    assert live["openai-1"] is not a and d.api_key("openai-1") == "ka-new"
    assert d.service("openai-1").key_source == "stored"  # type: ignore[union-attr]
    assert a in d._retired  # kept open: a stream that started on it finishes there

    d.reconfigure(
        models(("b/*", "http://b", "kb"), ("c/*", "http://c", "kc")),
        ollama_host="http://127.0.0.1:9",
        discover_ollama=False,
        default_model=None,
        ttl_s=30,
    )
    assert d.providers is live
    assert live["openai-2"] is b  # unchanged spec: same object, same pooled connections
    assert "openai-1" not in live and set(live) == {"openai-2", "openai-3"}
    assert d.current().find("a/x") is None and d.current().find("c/x") is not None
    # A stored key waits for its service: a reload that brings the service back uses it again. (It follows
    # the name, which is why services that keep stored keys should be named in the configuration.)
    named = [ConfiguredModel("a/*", "*", spec("openai", "http://a", "ka", service="alpha"))]

    def swap(configured: list[ConfiguredModel]) -> None:
        d.reconfigure(configured, ollama_host="http://127.0.0.1:9", discover_ollama=False, default_model=None, ttl_s=30)

    swap(named)
    d.set_api_key("alpha", "ka-stored")
    swap(models(("b/*", "http://b", "kb")))
    assert d.service("alpha") is None
    swap(named)
    assert d.api_key("alpha") == "ka-stored"
    await d.close()
    assert not d._retired


async def test_changes_need_the_admin_role() -> None:
    """The contract's "Admin only" RPCs refuse a plain user in the servicer itself, whatever policy runs
    before it (with auth off every caller is the local admin)."""
    directory = ProviderDirectory(
        models(("a/*", "http://a", "ka")), ollama_host="http://127.0.0.1:9", discover_ollama=False, default_model=None
    )
    store = RoutingStore()  # never reached: the role is checked first
    rules = RoutingRulesServicer(store, RuleBook(store), directory)
    keys = ProviderKeysServicer(directory, KeyVault(store, ServerKey(None, Path("/nonexistent")), directory))
    context = cast(CallContext, None)
    calls = [
        rules.CreateRoutingRule(
            routing_pb2.CreateRoutingRuleRequest(rule=routing_pb2.RoutingRule(service="x")), context
        ),
        rules.DeleteRoutingRule(routing_pb2.DeleteRoutingRuleRequest(rule_id="r"), context),
        keys.UpdateProviderKey(routing_pb2.UpdateProviderKeyRequest(service="openai", api_key="k" * 20), context),
        keys.TestProviderKey(routing_pb2.TestProviderKeyRequest(service="openai"), context),
    ]
    token = principal.set(Principal(user_id="u1", role=Role.USER))
    try:
        for call in calls:
            with pytest.raises(ForgeError) as err:
                await call
            assert err.value.code is ErrorCode.PERMISSION_DENIED
    finally:
        principal.reset(token)
        await directory.close()
