from __future__ import annotations

from datetime import UTC, datetime

import httpx
import pytest
from pydantic import ValidationError
from structlog.testing import capture_logs

from core.errors import StartupError, StrategyError, StrategyUnavailable, SubjectNotFound, TargetNotFound
from core.models import Subject, Target
from core.strategy import GrantContext
from strategies.okta import OktaIntegration, OktaIntegrationConfig, OktaStrategy, OktaStrategyConfig
from tests.fakes.okta_api import OktaFake
from tests.strategies.conftest import FakeTime
from tests.strategies.contract import Harness, run_contract, run_extend_contract

SERVER_NOW = 1_800_000_000.0


class FrozenClock:
    def __init__(self, at: float) -> None:
        self.at = at

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.at, UTC)


@pytest.fixture
async def okta():
    async with OktaFake(now=lambda: SERVER_NOW) as fake:
        yield fake


@pytest.fixture
def fake_time() -> FakeTime:
    return FakeTime()


@pytest.fixture
def clock() -> FrozenClock:
    # Deliberately far from the fake server's clock: rate-limit waits must be measured against Date.
    return FrozenClock(SERVER_NOW - 500)


@pytest.fixture
async def integration(okta, fake_time, clock, opened):
    config = OktaIntegrationConfig(type="okta", base_url=okta.url, api_token=okta.api_token)
    return await opened(
        OktaIntegration("okta_main", config, sleep=fake_time.sleep, monotonic=fake_time.monotonic, clock=clock)
    )


async def make_strategy(integration: OktaIntegration, group_id: str) -> OktaStrategy:
    config = OktaStrategyConfig(
        type="okta", integration="okta_main", targets=[{"name": "prod", "label": "Prod", "group_id": group_id}]
    )
    strategy = OktaStrategy(config, integrations={"okta_main": integration})
    await strategy.open()
    return strategy


def context(group_id: str, identity: str | None = "alice@example.com") -> GrantContext:
    return GrantContext(
        request_id="req-1",
        flow="okta_access",
        target=Target("prod", "Prod", {"group_id": group_id}),
        subject=Subject("U0ALICE", "alice@example.com", identity),
    )


async def test_okta_strategy_meets_the_contract_with_paged_group_lists(okta, integration):
    user_id = okta.add_user("alice@example.com")
    for name in ("eng", "oncall", "readers"):  # more groups than one page, so is_member must follow Link
        okta.members[okta.add_group(name)].add(user_id)
    group_id = okta.add_group("prod-admins")
    strategy = await make_strategy(integration, group_id)

    async def held() -> bool:
        return okta.is_member(group_id, user_id)

    await run_contract(Harness(strategy, context(group_id), held))
    assert any("after" in call.query for call in okta.calls_to("GET", f"/api/v1/users/{user_id}/groups"))


async def test_grant_state_keeps_the_okta_user_id(okta, integration):
    user_id = okta.add_user("alice@example.com")
    group_id = okta.add_group("prod-admins")
    result = await (await make_strategy(integration, group_id)).grant(context(group_id))
    assert result.state == {"okta_user_id": user_id, "group_id": group_id}
    assert okta.calls_to("PUT")[0].path == f"/api/v1/groups/{group_id}/users/{user_id}"


async def test_unknown_user_is_a_validation_issue_naming_okta(okta, integration):
    group_id = okta.add_group("prod-admins")
    strategy = await make_strategy(integration, group_id)
    issues = await strategy.validate(context(group_id, identity="nobody@example.com"))
    assert len(issues) == 1 and "Okta" in issues[0].user_message
    with pytest.raises(SubjectNotFound):
        await strategy.grant(context(group_id, identity="nobody@example.com"))
    assert okta.calls_to("PUT") == []


async def test_missing_identity_is_a_validation_issue_and_grant_refuses(okta, integration):
    group_id = okta.add_group("prod-admins")
    strategy = await make_strategy(integration, group_id)
    issues = await strategy.validate(context(group_id, identity=None))
    assert len(issues) == 1 and "Okta" in issues[0].user_message
    with pytest.raises(SubjectNotFound):
        await strategy.grant(context(group_id, identity=None))


async def test_a_person_without_an_identity_asking_for_a_missing_group_hears_of_both_problems(okta, integration):
    strategy = await make_strategy(integration, "00gMISSING")
    issues = await strategy.validate(context("00gMISSING", identity=None))
    assert len(issues) == 2
    assert "identities set" in issues[0].user_message and "does not exist" in issues[1].user_message


async def test_user_whose_login_is_not_the_email_is_found_by_email_search(okta, integration):
    user_id = okta.add_user("alice", email="alice@example.com")
    group_id = okta.add_group("prod-admins")
    strategy = await make_strategy(integration, group_id)
    assert await strategy.validate(context(group_id)) == []
    await strategy.grant(context(group_id))
    assert okta.is_member(group_id, user_id)
    assert okta.calls_to("GET", "/api/v1/users")[1].query == {"search": 'profile.email eq "alice@example.com"'}


async def test_two_users_sharing_an_email_ask_for_an_identity_override(okta, integration):
    okta.add_user("alice", email="alice@example.com")
    okta.add_user("alice.admin", email="alice@example.com")
    group_id = okta.add_group("prod-admins")
    issues = await (await make_strategy(integration, group_id)).validate(context(group_id))
    assert len(issues) == 1 and "Several Okta accounts" in issues[0].user_message


@pytest.mark.parametrize("status", ["SUSPENDED", "DEPROVISIONED"])
async def test_inactive_user_is_a_validation_issue(okta, integration, status):
    okta.add_user("alice@example.com", status=status)
    group_id = okta.add_group("prod-admins")
    strategy = await make_strategy(integration, group_id)
    issues = await strategy.validate(context(group_id))
    assert len(issues) == 1 and status.lower() in issues[0].user_message
    with pytest.raises(SubjectNotFound):
        await strategy.grant(context(group_id))


async def test_app_group_is_refused_before_any_membership_change(okta, integration):
    okta.add_user("alice@example.com")
    group_id = okta.add_group("AD Admins", type="APP_GROUP")
    strategy = await make_strategy(integration, group_id)
    issues = await strategy.validate(context(group_id))
    assert len(issues) == 1 and "cannot be changed" in issues[0].user_message
    assert "APP_GROUP" in issues[0].detail and "OKTA_GROUP" in issues[0].detail
    with pytest.raises(TargetNotFound, match="APP_GROUP"):
        await strategy.grant(context(group_id))
    assert okta.calls_to("PUT") == []


async def test_unknown_group_is_target_not_found(okta, integration):
    okta.add_user("alice@example.com")
    strategy = await make_strategy(integration, "00gMISSING")
    issues = await strategy.validate(context("00gMISSING"))
    assert len(issues) == 1 and "does not exist" in issues[0].user_message
    with pytest.raises(TargetNotFound):
        await strategy.grant(context("00gMISSING"))


async def test_rate_limit_waits_until_reset_measured_by_the_server_date(okta, integration, fake_time):
    user_id = okta.add_user("alice@example.com")
    group_id = okta.add_group("prod-admins")
    strategy = await make_strategy(integration, group_id)
    okta.throttle(2, reset_in=7)

    await strategy.grant(context(group_id))

    # Reset is server time + 7 s; the local clock is 500 s behind and must not matter. +1 s margin.
    assert fake_time.sleeps == [8.0, 8.0]
    assert okta.is_member(group_id, user_id)


async def test_rate_limit_without_date_header_uses_the_local_clock(clock, fake_time):
    responses = iter(
        [
            httpx.Response(429, headers={"X-Rate-Limit-Reset": str(int(clock.at) + 5)}, json={"errorCode": "E0000047"}),
            httpx.Response(200, json={"id": "00u1", "status": "ACTIVE", "profile": {"login": "a@example.com"}}),
        ]
    )
    config = OktaIntegrationConfig(type="okta", domain="example.okta.com", api_token="00local-token-value")
    client = OktaIntegration(
        "okta_main",
        config,
        sleep=fake_time.sleep,
        clock=clock,
        transport=httpx.MockTransport(lambda request: next(responses)),
    )
    user = await client.find_user("a@example.com")
    assert user is not None and user.id == "00u1"
    assert fake_time.sleeps == [6.0]
    await client.aclose()


async def test_rate_limit_reset_too_far_away_fails_retryably_without_waiting(okta, integration, fake_time):
    okta.add_user("alice@example.com")
    okta.throttle(1, reset_in=600)
    with pytest.raises(StrategyUnavailable, match="rate limited") as caught:
        await integration.find_user("alice@example.com")
    assert caught.value.retryable and fake_time.sleeps == []


async def test_endless_rate_limiting_gives_up_after_bounded_attempts(okta, integration, fake_time):
    okta.throttle(100, reset_in=3)
    with pytest.raises(StrategyUnavailable) as caught:
        await integration.find_user("alice@example.com")
    assert caught.value.retryable
    assert len(okta.calls) == 4 and fake_time.sleeps == [4.0, 4.0, 4.0]


async def test_server_errors_are_retried_with_back_off(okta, integration, fake_time):
    okta.add_user("alice@example.com")
    okta.fail(2, status=503)
    assert await integration.find_user("alice@example.com") is not None
    assert fake_time.sleeps == [0.5, 1.0]


async def test_connection_errors_become_retryable_unavailability(fake_time, clock):
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    config = OktaIntegrationConfig(type="okta", domain="example.okta.com", api_token="00local-token-value")
    client = OktaIntegration(
        "okta_main", config, sleep=fake_time.sleep, clock=clock, transport=httpx.MockTransport(refuse)
    )
    with pytest.raises(StrategyUnavailable, match="ConnectError") as caught:
        await client.find_user("a@example.com")
    assert caught.value.retryable and fake_time.sleeps == [0.5, 1.0, 2.0]
    await client.aclose()


async def test_wrong_token_is_a_permanent_error_that_names_the_token_not_its_value(okta, fake_time, clock):
    config = OktaIntegrationConfig(type="okta", base_url=okta.url, api_token="00wrong-token-value-123")
    client = OktaIntegration("okta_main", config, sleep=fake_time.sleep, clock=clock)
    with capture_logs() as logs, pytest.raises(StrategyUnavailable) as caught:
        await client.find_user("alice@example.com")
    assert not caught.value.retryable
    assert "API token" in str(caught.value) and "E0000011" in str(caught.value)
    assert "00wrong-token-value-123" not in str(caught.value) + caught.value.user_message + repr(logs)
    await client.aclose()


async def test_missing_permission_names_the_admin_role_needed(okta, integration):
    okta.add_user("alice@example.com")
    group_id = okta.add_group("prod-admins")
    okta.deny_writes = True
    with pytest.raises(StrategyUnavailable, match="Group Membership Administrator") as caught:
        await (await make_strategy(integration, group_id)).grant(context(group_id))
    assert not caught.value.retryable


async def test_revoke_of_a_membership_already_gone_succeeds(okta, integration):
    user_id = okta.add_user("alice@example.com")
    group_id = okta.add_group("prod-admins")
    strategy = await make_strategy(integration, group_id)
    await strategy.revoke(context(group_id), {"okta_user_id": user_id, "group_id": group_id})
    del okta.groups[group_id]  # the group itself deleted: a 404, and the access is gone all the same
    await strategy.revoke(context(group_id), {"okta_user_id": user_id, "group_id": group_id})
    assert [call.path for call in okta.calls_to("DELETE")] == [f"/api/v1/groups/{group_id}/users/{user_id}"] * 2


async def test_revoke_of_a_grant_in_doubt_looks_the_user_up(okta, integration):
    user_id = okta.add_user("alice@example.com")
    group_id = okta.add_group("prod-admins")
    okta.members[group_id].add(user_id)
    await (await make_strategy(integration, group_id)).revoke(context(group_id), {})
    assert not okta.is_member(group_id, user_id)


async def test_is_user_in_group_is_cached_briefly(okta, integration, fake_time):
    user_id = okta.add_user("alice@example.com")
    group_id = okta.add_group("prod-admins")
    okta.members[group_id].add(user_id)
    user = Subject("U0ALICE", "alice@example.com")

    assert await integration.is_user_in_group(user, group_id)
    calls = len(okta.calls)
    okta.members[group_id].discard(user_id)
    assert await integration.is_user_in_group(user, group_id), "a second call within the TTL is served from cache"
    assert len(okta.calls) == calls

    fake_time.now += 46
    assert not await integration.is_user_in_group(user, group_id)
    assert len(okta.calls) > calls


async def test_is_user_in_group_prefers_the_identity_and_is_false_for_strangers(okta, integration):
    user_id = okta.add_user("alice", email="alice@corp.example.com")
    group_id = okta.add_group("prod-admins")
    okta.members[group_id].add(user_id)
    assert await integration.is_user_in_group(Subject("U1", "alice@example.com", identity="alice"), group_id)
    assert not await integration.is_user_in_group(Subject("U2", "stranger@example.com"), group_id)
    assert not await integration.is_user_in_group(Subject("U3"), group_id)


async def test_unexpected_client_error_is_a_strategy_error(clock, fake_time):
    body = {"errorCode": "E0000001", "errorSummary": "Api validation failed"}
    transport = httpx.MockTransport(lambda request: httpx.Response(400, json=body))
    config = OktaIntegrationConfig(type="okta", domain="example.okta.com", api_token="00local-token-value")
    client = OktaIntegration("okta_main", config, sleep=fake_time.sleep, clock=clock, transport=transport)
    with pytest.raises(StrategyError, match="E0000001"):
        await client.get_group("00g1")
    await client.aclose()


async def test_paging_link_to_another_host_is_not_followed(clock, fake_time):
    seen: list[str] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(str(request.url))
        return httpx.Response(200, json=[{"id": "00gA"}], headers={"Link": '<https://evil.example/next>; rel="next"'})

    config = OktaIntegrationConfig(type="okta", domain="example.okta.com", api_token="00local-token-value")
    client = OktaIntegration(
        "okta_main", config, sleep=fake_time.sleep, clock=clock, transport=httpx.MockTransport(answer)
    )
    with pytest.raises(StrategyUnavailable, match="not followed"):
        await client.is_member("00gB", "00u1")
    assert seen == ["https://example.okta.com/api/v1/users/00u1/groups"]
    await client.aclose()


def test_config_takes_exactly_one_of_domain_or_base_url():
    by_domain = OktaIntegrationConfig(type="okta", domain="example.okta.com", api_token="t0ken")
    by_url = OktaIntegrationConfig(type="okta", base_url="http://127.0.0.1:8080/", api_token="t0ken")
    assert (by_domain.url, by_url.url) == ("https://example.okta.com", "http://127.0.0.1:8080")
    for bad in (
        {},
        {"domain": "example.okta.com", "base_url": "https://example.okta.com"},
        {"domain": "https://example.okta.com"},
        {"base_url": "example.okta.com"},
    ):
        with pytest.raises(ValidationError):
            OktaIntegrationConfig(type="okta", api_token="t0ken", **bad)


def test_secret_token_is_redacted_in_the_config():
    config = OktaIntegrationConfig(type="okta", domain="example.okta.com", api_token="00super-secret-token")
    assert "00super-secret-token" not in repr(config) + str(config.model_dump())


def test_strategy_requires_an_okta_integration():
    targets = [{"name": "a", "label": "A", "group_id": "00g1"}]
    config = OktaStrategyConfig(type="okta", integration="missing", targets=targets)
    with pytest.raises(StartupError, match="integration 'missing'"):
        OktaStrategy(config, integrations={})


async def test_no_secret_in_logs_across_throttling_and_grants(okta, integration):
    okta.add_user("alice@example.com")
    group_id = okta.add_group("prod-admins")
    okta.throttle(1, reset_in=2)
    strategy = await make_strategy(integration, group_id)
    with capture_logs() as logs:
        result = await strategy.grant(context(group_id))
        await strategy.revoke(context(group_id), result.state)
    assert {entry["event"] for entry in logs} >= {"okta_rate_limited", "okta_group_granted", "okta_group_revoked"}
    assert okta.api_token not in repr(logs)


async def test_extend_keeps_the_okta_group_membership(okta, integration):
    user_id = okta.add_user("alice@example.com")
    group_id = okta.add_group("prod-admins")
    strategy = await make_strategy(integration, group_id)

    async def held() -> bool:
        return okta.is_member(group_id, user_id)

    await run_extend_contract(Harness(strategy, context(group_id), held))
