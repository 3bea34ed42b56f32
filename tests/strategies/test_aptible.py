from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import pytest
from pydantic import ValidationError
from structlog.testing import capture_logs

from core.errors import StartupError, StrategyUnavailable, SubjectNotFound, TargetNotFound
from core.models import Subject, Target
from core.strategy import GrantContext
from strategies.aptible import AptibleIntegration, AptibleIntegrationConfig, AptibleStrategy, AptibleStrategyConfig
from tests.fakes.aptible_api import AptibleFake
from tests.strategies.conftest import FakeTime
from tests.strategies.contract import Harness, run_contract, run_extend_contract

BOT_EMAIL = "jitbot@acme.example"
BOT_PASSWORD = "correct-horse-battery-staple"


class FrozenClock:
    def __init__(self, at: float) -> None:
        self.at = at

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.at, UTC)

    def advance(self, seconds: float) -> None:
        self.at += seconds


@dataclass
class Org:
    id: str
    owners: str
    developers: str
    prod: str
    alice: str


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock(1_800_000_000.0)


@pytest.fixture
def fake_time() -> FakeTime:
    return FakeTime()


@pytest.fixture
async def aptible(clock):
    async with AptibleFake(now=lambda: clock.at) as fake:
        yield fake


@pytest.fixture
def org(aptible) -> Org:
    org_id = aptible.add_organization("Acme")
    owners = aptible.add_role(org_id, "Account Owners", type="owner")
    aptible.add_membership(owners, aptible.add_user(BOT_EMAIL, password=BOT_PASSWORD))
    developers = aptible.add_role(org_id, "Developers")
    alice = aptible.add_user("alice@acme.example")
    aptible.add_membership(developers, alice)  # her baseline role, outside jitbot
    for name in ("bob", "carol", "dave"):  # more users than one page, so lookups must follow _links.next
        aptible.add_membership(developers, aptible.add_user(f"{name}@acme.example"))
    prod = aptible.add_role(org_id, "Prod Deploy")
    return Org(org_id, owners, developers, prod, alice)


def make_integration(aptible: AptibleFake, org: Org, clock, fake_time, *, username=BOT_EMAIL, password=BOT_PASSWORD):
    config = AptibleIntegrationConfig(
        type="aptible",
        organization_id=org.id,
        username=username,
        password=password,
        auth_url=aptible.url,
        api_url=aptible.url,
    )
    return AptibleIntegration("aptible_main", config, sleep=fake_time.sleep, clock=clock)


@pytest.fixture
async def integration(aptible, org, clock, fake_time):
    client = make_integration(aptible, org, clock, fake_time)
    yield client
    await client.aclose()


async def make_strategy(integration: AptibleIntegration, role_id: str) -> AptibleStrategy:
    config = AptibleStrategyConfig(
        type="aptible", integration="aptible_main", targets=[{"name": "prod", "label": "Prod", "role_id": role_id}]
    )
    strategy = AptibleStrategy(config, integrations={"aptible_main": integration})
    await strategy.open()
    return strategy


def context(role_id: str, identity: str | None = "alice@acme.example") -> GrantContext:
    return GrantContext(
        request_id="req-1",
        flow="aptible_access",
        target=Target("prod", "Prod", {"role_id": role_id}),
        subject=Subject("U0ALICE", "alice@acme.example", identity),
    )


async def test_aptible_strategy_meets_the_contract_with_paged_collections(aptible, org, integration):
    strategy = await make_strategy(integration, org.prod)

    async def held() -> bool:
        return aptible.has_role(org.prod, org.alice)

    await run_contract(Harness(strategy, context(org.prod), held))
    assert any(call.query.get("page") == "2" for call in aptible.calls_to("GET", f"/organizations/{org.id}/users"))
    assert aptible.has_role(org.developers, org.alice), "the baseline role is never touched"


async def test_login_uses_the_password_grant_once_and_grant_state_keeps_ids(aptible, org, integration):
    result = await (await make_strategy(integration, org.prod)).grant(context(org.prod))
    assert set(result.state) == {"aptible_user_id", "role_id", "membership_id"}
    assert result.state["aptible_user_id"] == org.alice and result.state["role_id"] == org.prod
    assert aptible.login_forms == [
        {"grant_type": "password", "username": BOT_EMAIL, "scope": "manage", "expires_in": 3600}
    ]
    membership = aptible.memberships[result.state["membership_id"]]
    assert membership == {"user": org.alice, "role": org.prod, "privileged": False}


async def test_user_outside_the_organization_is_a_validation_issue_naming_aptible(aptible, org, integration):
    aptible.add_user("mallory@elsewhere.example")
    strategy = await make_strategy(integration, org.prod)
    issues = await strategy.validate(context(org.prod, identity="mallory@elsewhere.example"))
    assert len(issues) == 1 and "Aptible" in issues[0].user_message
    with pytest.raises(SubjectNotFound):
        await strategy.grant(context(org.prod, identity="mallory@elsewhere.example"))
    assert aptible.calls_to("POST", "/roles") == []


async def test_missing_identity_is_a_validation_issue(aptible, org, integration):
    issues = await (await make_strategy(integration, org.prod)).validate(context(org.prod, identity=None))
    assert len(issues) == 1 and "Aptible" in issues[0].user_message


async def test_role_of_another_organization_or_unknown_role_is_refused(aptible, org, integration):
    other_org = aptible.add_organization("Other")
    foreign_role = aptible.add_role(other_org, "Their Admins")
    strategy = await make_strategy(integration, foreign_role)
    issues = await strategy.validate(context(foreign_role))
    assert len(issues) == 1 and "another organization" in issues[0].detail
    with pytest.raises(TargetNotFound):
        await strategy.grant(context(foreign_role))
    with pytest.raises(TargetNotFound, match="does not exist"):
        await (await make_strategy(integration, "no-such-role")).grant(context("no-such-role"))


async def test_a_rejected_token_is_replaced_once_and_the_call_succeeds(aptible, org, integration):
    strategy = await make_strategy(integration, org.prod)
    await strategy.grant(context(org.prod))
    assert len(aptible.login_forms) == 1

    aptible.expire_tokens()
    assert await strategy.is_active(context(org.prod))

    assert len(aptible.token_requests) == 2


async def test_the_token_is_renewed_before_it_expires(aptible, org, clock, integration):
    strategy = await make_strategy(integration, org.prod)
    await strategy.validate(context(org.prod))
    clock.advance(3600 - 30)  # still valid on the server, but inside the refresh margin
    calls_before = len(aptible.calls)
    await strategy.validate(context(org.prod))
    assert len(aptible.token_requests) == 2
    assert aptible.calls[calls_before].path == "/tokens", "the new login comes first, not after a 401"


async def test_bot_user_with_mfa_gets_a_clear_permanent_error(aptible, org, clock, fake_time):
    aptible.add_user("mfa-bot@acme.example", password="mfa-bot-password-123", mfa=True)
    client = make_integration(
        aptible, org, clock, fake_time, username="mfa-bot@acme.example", password="mfa-bot-password-123"
    )
    with capture_logs() as logs, pytest.raises(StrategyUnavailable) as caught:
        await client.find_user_by_email("alice@acme.example")
    assert not caught.value.retryable
    assert "otp_token_required" in str(caught.value) and "without interactive MFA" in str(caught.value)
    assert "mfa-bot-password-123" not in str(caught.value) + caught.value.user_message + repr(logs)
    await client.aclose()


async def test_wrong_password_is_permanent_and_never_shows_the_password(aptible, org, clock, fake_time):
    client = make_integration(aptible, org, clock, fake_time, password="not-the-password-42")
    with pytest.raises(StrategyUnavailable, match="invalid_credentials") as caught:
        await client.get_role(org.prod)
    assert not caught.value.retryable and "not-the-password-42" not in str(caught.value)
    await client.aclose()


async def test_bot_user_without_permission_is_told_which_role_it_needs(aptible, org, clock, fake_time):
    aptible.add_membership(org.developers, aptible.add_user("weak-bot@acme.example", password="weak-bot-pw-1"))
    client = make_integration(
        aptible, org, clock, fake_time, username="weak-bot@acme.example", password="weak-bot-pw-1"
    )
    with pytest.raises(StrategyUnavailable, match="Account Owner") as caught:
        await (await make_strategy(client, org.prod)).grant(context(org.prod))
    assert not caught.value.retryable and not aptible.has_role(org.prod, org.alice)
    await client.aclose()


async def test_role_admin_bot_may_grant_its_role(aptible, org, clock, fake_time):
    bot = aptible.add_user("role-admin-bot@acme.example", password="role-admin-pw-1")
    aptible.add_membership(org.prod, bot, privileged=True)
    client = make_integration(
        aptible, org, clock, fake_time, username="role-admin-bot@acme.example", password="role-admin-pw-1"
    )
    await (await make_strategy(client, org.prod)).grant(context(org.prod))
    assert aptible.has_role(org.prod, org.alice)
    await client.aclose()


async def test_server_errors_are_retried_with_back_off(aptible, org, integration, fake_time):
    aptible.fail(2, status=502)
    await (await make_strategy(integration, org.prod)).grant(context(org.prod))
    assert fake_time.sleeps == [0.5, 1.0] and aptible.has_role(org.prod, org.alice)


async def test_persistent_server_errors_are_retryable(aptible, org, integration):
    aptible.fail(10, status=503)
    with pytest.raises(StrategyUnavailable) as caught:
        await integration.get_role(org.prod)
    assert caught.value.retryable


async def test_revoke_of_a_membership_already_gone_succeeds(aptible, org, integration):
    strategy = await make_strategy(integration, org.prod)
    result = await strategy.grant(context(org.prod))
    del aptible.memberships[result.state["membership_id"]]  # removed by hand in the Aptible dashboard
    await strategy.revoke(context(org.prod), result.state)
    assert aptible.calls_to("DELETE") == []
    await integration.delete_membership(result.state["membership_id"])  # a 404 is success too
    assert len(aptible.calls_to("DELETE")) == 1


async def test_revoke_of_a_grant_in_doubt_looks_the_user_up(aptible, org, integration):
    aptible.add_membership(org.prod, org.alice)
    await (await make_strategy(integration, org.prod)).revoke(context(org.prod), {})
    assert not aptible.has_role(org.prod, org.alice)


async def test_revoking_the_last_role_still_revokes_and_logs_a_warning(aptible, org, integration):
    strategy = await make_strategy(integration, org.prod)
    result = await strategy.grant(context(org.prod))
    for membership_id, m in list(aptible.memberships.items()):  # baseline role removed during the grant
        if m["user"] == org.alice and m["role"] == org.developers:
            del aptible.memberships[membership_id]

    with capture_logs() as logs:
        await strategy.revoke(context(org.prod), result.state)

    assert not aptible.has_role(org.prod, org.alice)
    warning = next(entry for entry in logs if entry["event"] == "aptible_revoked_last_role")
    assert warning["log_level"] == "warning" and warning["aptible_user_id"] == org.alice
    assert await integration.find_user_by_email("alice@acme.example") is None, "Aptible drops her from the org"


async def test_revoke_with_other_roles_left_logs_no_last_role_warning(aptible, org, integration):
    strategy = await make_strategy(integration, org.prod)
    result = await strategy.grant(context(org.prod))
    with capture_logs() as logs:
        await strategy.revoke(context(org.prod), result.state)
    assert "aptible_revoked_last_role" not in {entry["event"] for entry in logs}


async def test_duplicate_membership_answer_returns_the_existing_membership(aptible, org, integration):
    href = f"{aptible.url}/users/{org.alice}"
    first = await integration.add_membership(org.prod, href)
    second = await integration.add_membership(org.prod, href)  # the fake answers 422 "already taken"
    assert first == second and len(aptible.calls_to("POST", "/roles")) == 2


async def test_no_secret_in_logs_across_login_refresh_grant_and_revoke(aptible, org, integration):
    strategy = await make_strategy(integration, org.prod)
    with capture_logs() as logs:
        result = await strategy.grant(context(org.prod))
        issued = list(aptible.tokens)
        aptible.expire_tokens()
        await strategy.revoke(context(org.prod), result.state)
    issued += list(aptible.tokens)
    assert {entry["event"] for entry in logs} >= {"aptible_logged_in", "aptible_token_rejected", "aptible_role_revoked"}
    text = repr(logs)
    assert BOT_PASSWORD not in text and not any(token in text for token in issued)


def test_config_defaults_and_url_checks():
    config = AptibleIntegrationConfig(
        type="aptible", organization_id="o1", username="bot@x.example", password="pw-secret"
    )
    assert (config.auth_url, config.api_url) == ("https://auth.aptible.com", "https://api.aptible.com")
    assert "pw-secret" not in repr(config) + str(config.model_dump())
    with pytest.raises(ValidationError):
        AptibleIntegrationConfig(
            type="aptible", organization_id="o1", username="b", password="pw", auth_url="auth.aptible.com"
        )


def test_strategy_requires_an_aptible_integration():
    targets = [{"name": "a", "label": "A", "role_id": "r1"}]
    config = AptibleStrategyConfig(type="aptible", integration="nope", targets=targets)
    with pytest.raises(StartupError, match="integration 'nope'"):
        AptibleStrategy(config, integrations={})


async def test_extend_keeps_the_aptible_role(aptible, org, integration):
    strategy = await make_strategy(integration, org.prod)

    async def held() -> bool:
        return aptible.has_role(org.prod, org.alice)

    await run_extend_contract(Harness(strategy, context(org.prod), held))
