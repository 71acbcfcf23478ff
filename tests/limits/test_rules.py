"""The pure parts: which subjects and checks a call gets, the bucket arithmetic, budget periods, the config
section, and the header spelling."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from forge_rpc.domain.identity import LOCAL, Principal, Quota, Role
from forge_rpc.domain.limits import (
    WINDOW_MS,
    BudgetPeriod,
    Check,
    Demand,
    Kind,
    LimitRules,
    Rates,
    bucket_admit,
    bucket_remaining,
    bucket_reset_ms,
    bucket_retry_ms,
    drained,
    estimate_prompt_tokens,
    nano_usd,
    plan,
    subjects_for,
)
from forge_rpc.server.config import ConfigError, load_config
from forge_rpc.server.config.limits import parse_limits
from forge_rpc.server.limits_policy import duration_text

RULES = LimitRules(
    anonymous=Rates(rpm=100),
    authenticated=Rates(rpm=1000, tpm=50_000),
    api_key=Rates(concurrent_streams=4),
    models=(("gpt-4o", Rates(rpm=7)), ("openai/*", Rates(tpm=900))),
)


def test_auth_off_is_limited_per_address_as_anonymous() -> None:
    (subject,) = subjects_for(LOCAL, "10.1.2.3", None, RULES)
    assert subject.name == "ip:10.1.2.3" and subject.rates == Rates(rpm=100)


def test_a_user_with_a_key_is_limited_as_user_key_and_model() -> None:
    who = Principal(
        user_id="u1",
        role=Role.USER,
        api_key_id="k1",
        user_quota=Quota(requests_per_minute=5, budget_usd=2.0),
        key_quota=Quota(tokens_per_minute=0, max_concurrent_streams=1),
    )
    subjects = subjects_for(who, "ignored", RULES.model_entry("openai/gpt-4o-mini"), RULES)
    assert [s.name for s in subjects] == ["user:u1", "key:k1", "model:openai/*"]
    user, key, model = (s.rates for s in subjects)
    assert user == Rates(rpm=5, tpm=50_000, budget_usd=2.0)  # the quota wins field by field
    assert key == Rates(concurrent_streams=1)
    assert model == Rates(tpm=900)


def test_exact_model_names_win_over_globs() -> None:
    assert RULES.model_entry("gpt-4o") == ("gpt-4o", Rates(rpm=7))
    assert RULES.model_entry("openai/x") == ("openai/*", Rates(tpm=900))
    assert RULES.model_entry("ollama/llama3") is None


def test_plan_skips_unlimited_counters_and_prices_in_nano_dollars() -> None:
    subjects = subjects_for(Principal("u", Role.USER, user_quota=Quota(budget_usd=1.5)), "", None, RULES)
    checks = plan(subjects, Demand(tokens=120, nano_usd=nano_usd(0.0003), stream=True))
    assert checks == (
        Check("user:u", Kind.REQUESTS, 1000, 1),
        Check("user:u", Kind.TOKENS, 50_000, 120),
        Check("user:u", Kind.SPEND, 1_500_000_000, 300_000),
    )
    assert plan(subjects_for(LOCAL, "1.1.1.1", None, LimitRules()), Demand(tokens=5)) == ()


def test_a_bucket_admits_exactly_its_limit_then_refills_continuously() -> None:
    for limit in (1, 3, 7, 100, 999):  # limits whose per-request share is not a whole number of ms
        level = 0
        for _ in range(limit):
            after = bucket_admit(level, 1, limit)
            assert after is not None
            level = after
        assert bucket_admit(level, 1, limit) is None
        assert bucket_remaining(level, limit) == 0
        wait = bucket_retry_ms(level, 1, limit)
        assert wait == -(-WINDOW_MS // limit)  # one request's share of the minute
        assert bucket_admit(drained(level, 0, wait - 1, limit), 1, limit) is None
        assert bucket_admit(drained(level, 0, wait, limit), 1, limit) is not None
        assert bucket_reset_ms(level, limit) == WINDOW_MS


def test_an_amount_over_the_limit_can_never_fit() -> None:
    assert bucket_retry_ms(0, 101, 100) == -1


def test_calendar_month_periods_in_utc() -> None:
    month = BudgetPeriod()
    late = int(datetime(2024, 2, 29, 23, 59, 59, tzinfo=UTC).timestamp() * 1000)
    assert month.label(late) == "202402"
    assert month.end_ms(late) == int(datetime(2024, 3, 1, tzinfo=UTC).timestamp() * 1000)
    assert month.label(month.end_ms(late)) == "202403"
    day = BudgetPeriod(86_400)
    assert day.end_ms(late) - late == 1000


def test_prompt_estimate_leans_high() -> None:
    # "hello there world" is 3 tokens to the fake and to tiktoken; the estimate must not be lower.
    assert estimate_prompt_tokens(len("hello there world"), 1) == 13


def test_config_defaults_are_seed_003s() -> None:
    cfg = load_config(env={})
    assert (cfg.limits.anon_rpm, cfg.limits.user_rpm) == (100, 1000)
    assert not cfg.limits.cache.enabled
    assert cfg.limits.budget_period == BudgetPeriod()


def test_config_from_file_section_and_environment() -> None:
    section = {
        "anonymous": {"rpm": 10, "tpm": 2000, "concurrent_streams": 2},
        "authenticated": {"budget_usd": 25.5, "token_quota": 1_000_000},
        "models": {"gpt-4o": {"rpm": 500}},
        "budget_period": "day",
        "cache": {"enabled": True, "ttl_s": 60, "max_entries": 50},
    }
    env = {"FORGE_RATE_LIMIT_ANON_RPM": "0", "FORGE_RATE_LIMIT_USER_RPM": "42", "FORGE_CACHE_TTL_S": "5"}
    cfg = parse_limits(section, env)
    assert cfg.anonymous == Rates(rpm=0, tpm=2000, concurrent_streams=2)  # 0 from the env: no limit
    assert cfg.authenticated == Rates(rpm=42, budget_usd=25.5, token_quota=1_000_000)
    assert cfg.models == (("gpt-4o", Rates(rpm=500)),)
    assert cfg.budget_period == BudgetPeriod(86_400)
    assert (cfg.cache.enabled, cfg.cache.ttl_s, cfg.cache.max_entries) == (True, 5.0, 50)


@pytest.mark.parametrize(
    ("section", "env", "named"),
    [
        ({"anonymous": {"rpm": -1}}, {}, "limits.anonymous.rpm"),
        ({"anonymous": {"rpm": 1.5}}, {}, "limits.anonymous.rpm"),
        ({"anonymous": {"rmp": 5}}, {}, "rmp"),
        ({"anonymous": 5}, {}, "limits.anonymous"),
        ({}, {"FORGE_RATE_LIMIT_ANON_RPM": "lots"}, "FORGE_RATE_LIMIT_ANON_RPM"),
        ({"authenticated": {"budget_usd": "inf"}}, {}, "budget_usd"),
        ({"budget_period": "fortnight"}, {}, "budget_period"),
        ({"cache": {"enabled": "yes please"}}, {}, "cache.enabled"),
        ({"models": ["gpt-4o"]}, {}, "limits.models"),
    ],
)
def test_bad_settings_name_themselves(section: dict[str, object], env: dict[str, str], named: str) -> None:
    with pytest.raises(ConfigError, match=named.replace(".", r"\.")):
        parse_limits(section, env)


def test_durations_are_spelled_as_openai_does() -> None:
    assert [duration_text(ms) for ms in (0, 250, 1000, 1500, 60_000, 360_000, 61_250)] == [
        "0ms",
        "250ms",
        "1s",
        "1.5s",
        "1m0s",
        "6m0s",
        "1m1.25s",
    ]
