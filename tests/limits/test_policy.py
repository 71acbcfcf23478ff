"""The limits policy on its own, with principals the auth policy would set: per-key quotas, per-user limits,
and which client address an anonymous call is counted under."""

from __future__ import annotations

import pytest

from forge_rpc.adapters.accounting import PriceTable
from forge_rpc.adapters.coordination.limiter_memory import MemoryLimiter
from forge_rpc.domain import ForgeError
from forge_rpc.domain.identity import ANONYMOUS, Principal, Quota, Role
from forge_rpc.domain.limits import BudgetPeriod, Rates
from forge_rpc.server.config.limits import LimitsConfig
from forge_rpc.server.limits_policy import LimitsPolicy, client_address
from forge_rpc.server.policy import CallInfo
from forge_rpc.services.context import CallUsage, call_usage, principal, request_id, response_headers, trailing
from tests.limits.conftest import call_context

LIST = CallInfo(
    "/forge.models.v1.ModelsService/ListModels", "forge.models.v1.ModelsService", "ListModels", False, False
)


def policy(**fields: object) -> LimitsPolicy:
    config = LimitsConfig(**fields)  # type: ignore[arg-type]
    return LimitsPolicy(config, MemoryLimiter(BudgetPeriod()), PriceTable())


async def admit(p: LimitsPolicy, who: Principal, peer: str = "ipv4:10.0.0.9:1234") -> list[tuple[str, str]]:
    """One call as the pipeline makes it; the headers the policy sent."""
    principal.set(who)
    request_id.set("r")
    response_headers.set([])
    trailing.set([])
    call_usage.set(CallUsage())
    await p.admit(LIST, object(), call_context((), peer))
    return response_headers.get()


async def test_a_keys_own_quota_overrides_the_key_defaults() -> None:
    p = policy(authenticated=Rates(rpm=100), api_key=Rates(rpm=50))
    k1 = Principal("u1", Role.USER, api_key_id="k1", key_quota=Quota(requests_per_minute=2))
    headers = [await admit(p, k1) for _ in range(2)]
    # The tightest of the limits that apply (the key's 2, not the user's 100) is the one reported.
    assert [dict(h)["x-ratelimit-remaining-requests"] for h in headers] == ["1", "0"]
    with pytest.raises(ForgeError) as refused:
        await admit(p, k1)
    assert refused.value.quota_violations[0][0] == "key:k1"
    assert refused.value.reason == "RATE_LIMIT_EXCEEDED"
    # Another key of the same user has the key default (50) and the user's 100, of which 3 are used.
    k2 = Principal("u1", Role.USER, api_key_id="k2")
    assert dict(await admit(p, k2))["x-ratelimit-remaining-requests"] == "49"


async def test_a_users_quota_of_zero_lifts_the_default() -> None:
    p = policy(authenticated=Rates(rpm=1))
    unlimited = Principal("vip", Role.USER, user_quota=Quota(requests_per_minute=0))
    for _ in range(5):
        assert await admit(p, unlimited) == []  # no limit applies: nothing reported
    limited_user = Principal("other", Role.USER)
    await admit(p, limited_user)
    with pytest.raises(ForgeError):
        await admit(p, limited_user)


async def test_anonymous_callers_are_counted_per_address() -> None:
    p = policy(anonymous=Rates(rpm=1))
    await admit(p, ANONYMOUS, "ipv4:198.51.100.1:1000")
    await admit(p, ANONYMOUS, "ipv4:198.51.100.2:1000")
    with pytest.raises(ForgeError) as refused:
        await admit(p, ANONYMOUS, "ipv4:198.51.100.1:2000")  # another port, the same client
    assert refused.value.quota_violations[0][0] == "ip:198.51.100.1"


def test_the_edges_client_address_is_believed_only_from_the_edge() -> None:
    claim = (("x-forge-client-ip", "192.0.2.7"),)
    assert client_address(call_context(claim, "edge")) == "192.0.2.7"  # in process
    assert client_address(call_context(claim, "ipv4:10.1.1.1:5000")) == "192.0.2.7"  # a split edge
    # A remote gRPC client cannot choose its bucket by claiming an address.
    assert client_address(call_context(claim, "ipv4:8.8.4.4:5000")) == "8.8.4.4"
    assert client_address(call_context(claim, "ipv6:[2606:4700::1111]:5000")) == "2606:4700::1111"
