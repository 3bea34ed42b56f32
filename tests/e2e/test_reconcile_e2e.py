"""Drift reconciliation end to end: the production Runtime, a grant approved through Slack, and the
target system itself (local Okta and Aptible fakes, moto's IAM and IAM Identity Center) holding
someone jitbot never granted.

Every check reads the target system, never the bot's memory. Time is the FrozenClock: the tests call
`runtime.reconciler.run_due()` as the scheduler's tick would.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from core.models import RequestStatus
from tests.e2e.flows import flow, flows_file, okta_integration, okta_strategy, reason_and_duration, target
from tests.e2e.harness import RunningBot
from tests.fakes.aptible_api import AptibleFake
from tests.fakes.moto_server import REGION, seed_identity_center
from tests.fakes.moto_server import SSO_ACCOUNT as ACCOUNT
from tests.fakes.okta_api import OktaFake

ALICE = "alice@example.com"  # the emulator's U_ALICE: she asks, Bob approves
MALLORY = "mallory@example.com"  # holds the target without any grant
SERVICE = "svc-deploy@example.com"  # holds it on purpose: exempt
EXEMPT = [SERVICE]


def reconciling_flow(name: str, strategy: dict[str, Any], action: str, **reconcile: Any) -> dict[str, Any]:
    return flow(
        name,
        "Prod Admins",
        strategy,
        reason_and_duration("30m"),
        reconcile={"every": "1h", "action": action, "exempt": EXEMPT, **reconcile},
    )


async def grant_alice(bot: RunningBot, flow_name: str) -> None:
    message = await bot.request("U_ALICE", flow_name, "C_APPROVALS", target="Prod Admins", duration="30m")
    await bot.approve(message)


async def drift_audit(bot: RunningBot) -> list[tuple[str, str]]:
    """(action, holder) of every drift audit row, oldest first."""
    events = await bot.engine.audit.list(limit=10_000)
    return [(e.action, str(e.detail.get("holder", ""))) for e in events if e.action.startswith("drift.")]


def alerts_about(bot: RunningBot, text: str) -> list[str]:
    return [m.plain for m in bot.slack.messages_in("C_ALERTS") if text in m.plain]


async def wait_alert(bot: RunningBot, text: str) -> str:
    message = await bot.slack.wait_for_message("C_ALERTS", contains=text)
    return message.plain


# ── Okta: the whole behaviour ─────────────────────────────────────────────────────────────────────


@pytest.fixture
async def okta():
    async with OktaFake() as fake:  # pages of 2: listing must follow Link headers
        yield fake


def okta_flows(okta: OktaFake, group: str, action: str) -> str:
    strategy = okta_strategy("okta", target("prod", "Prod Admins", group_id=group))
    return flows_file(
        reconciling_flow("okta_prod", strategy, action),
        integrations={"okta": okta_integration(okta.url, okta.api_token)},
    )


async def test_okta_someone_in_the_group_without_a_grant_is_removed_and_the_grant_holder_is_not(launch, okta):
    alice, mallory, service = okta.add_user(ALICE), okta.add_user(MALLORY), okta.add_user(SERVICE)
    group = okta.add_group("prod-admins")
    for extra in ("a@example.com", "b@example.com"):  # more members than one page
        okta.members[group].add(okta.add_user(extra))
    okta.members[group] |= {mallory, service}
    bot = await launch.start(okta_flows(okta, group, "revoke"))
    await grant_alice(bot, "okta_prod")
    assert okta.is_member(group, alice)

    results = await bot.runtime.reconciler.run_due()

    assert results["okta_prod"].found == 3 and results["okta_prod"].removed == 3
    assert not okta.is_member(group, mallory)
    assert okta.is_member(group, alice), "a live grant's holder is never touched"
    assert okta.is_member(group, service), "an exempt identity is left alone"
    assert "jitbot removed it" in await wait_alert(bot, MALLORY)
    assert ("drift.found", MALLORY) in await drift_audit(bot)
    assert ("drift.removed", MALLORY) in await drift_audit(bot)


async def test_okta_drift_is_alerted_once_across_restarts_and_a_returning_holder_is_a_new_finding(launch, okta):
    mallory = okta.add_user(MALLORY)
    group = okta.add_group("prod-admins")
    okta.members[group].add(mallory)
    flows = okta_flows(okta, group, "alert")
    bot = await launch.start(flows)

    await bot.runtime.reconciler.run_due()
    await wait_alert(bot, MALLORY)
    assert okta.is_member(group, mallory), "action: alert changes nothing"
    assert await bot.runtime.reconciler.run_due() == {}, "not due again before `every` has passed"

    bot.clock.advance(hours=1)
    await bot.runtime.reconciler.run_due()
    assert len(alerts_about(bot, MALLORY)) == 1, "the same finding is alerted once"

    # A restart: the next run is still an hour after the last (stored), and the finding is remembered.
    clock = bot.clock
    await bot.stop()
    bot = await launch.start(flows, clock=clock)
    assert await bot.runtime.reconciler.run_due() == {}
    clock.advance(hours=1)
    assert "okta_prod" in await bot.runtime.reconciler.run_due()
    assert len(alerts_about(bot, MALLORY)) == 1

    okta.members[group].discard(mallory)  # removed by hand: the finding is resolved
    clock.advance(hours=1)
    assert (await bot.runtime.reconciler.run_due())["okta_prod"].resolved == 1
    okta.members[group].add(mallory)  # and back again: a new finding, alerted again
    clock.advance(hours=1)
    await bot.runtime.reconciler.run_due()
    await bot.slack.wait_for(lambda: len(alerts_about(bot, MALLORY)) == 2, description="a second alert")
    actions = [a for a, holder in await drift_audit(bot) if holder == MALLORY]
    assert actions == ["drift.found", "drift.resolved", "drift.found"]


async def test_okta_a_listing_that_fails_is_alerted_and_removes_nothing(launch, okta):
    mallory = okta.add_user(MALLORY)
    group = okta.add_group("prod-admins")
    okta.members[group].add(mallory)
    bot = await launch.start(okta_flows(okta, group, "revoke"))
    okta.api_token = "00another-token"  # the bot's token is refused from now on (revoked in Okta)

    results = await bot.runtime.reconciler.run_due()

    assert results["okta_prod"].listing_failed == 1 and results["okta_prod"].found == 0
    assert okta.is_member(group, mallory), "a failed listing is never taken as an empty group"
    alert = await wait_alert(bot, "could not list who holds okta_prod/prod")
    assert "401" in alert and "00another-token" not in alert
    bot.clock.advance(hours=1)
    await bot.runtime.reconciler.run_due()
    assert len(alerts_about(bot, "could not list")) == 1, "a run of failures is alerted once"
    assert [a for a, _ in await drift_audit(bot)] == ["drift.listing_failed"]


# ── the other listable systems: drift found and removed, checked in the system itself ────────────


async def test_aptible_a_role_membership_without_a_grant_is_removed(launch, monkeypatch):
    async with AptibleFake() as aptible:
        org = aptible.add_organization("Acme")
        owners = aptible.add_role(org, "Account Owners", type="owner")
        aptible.add_membership(owners, aptible.add_user("jitbot@acme.example", password="pw-aptible-bot"))
        role = aptible.add_role(org, "Prod Deploy")
        alice, mallory, service = aptible.add_user(ALICE), aptible.add_user(MALLORY), aptible.add_user(SERVICE)
        aptible.add_membership(aptible.add_role(org, "Developers"), alice)  # her baseline role: in the org
        for person in (mallory, service):
            aptible.add_membership(role, person)
        strategy = {
            "type": "aptible",
            "integration": "aptible",
            "targets": [target("prod", "Prod Admins", role_id=role)],
        }
        integration = {
            "type": "aptible",
            "organization_id": org,
            "username": "jitbot@acme.example",
            "password": "pw-aptible-bot",
            "auth_url": aptible.url,
        }
        bot = await launch.start(
            flows_file(reconciling_flow("aptible_prod", strategy, "revoke"), integrations={"aptible": integration})
        )
        await grant_alice(bot, "aptible_prod")
        assert aptible.has_role(role, alice)

        results = await bot.runtime.reconciler.run_due()

        assert results["aptible_prod"].removed == 1
        assert not aptible.has_role(role, mallory)
        assert aptible.has_role(role, alice) and aptible.has_role(role, service)
        await wait_alert(bot, MALLORY)
        assert ("drift.removed", MALLORY) in await drift_audit(bot)
        await bot.stop()


async def test_aws_iam_a_group_member_without_a_grant_is_removed(launch, moto):
    iam = moto.client("iam")
    iam.create_group(GroupName="ProdAdmins")
    for user in (ALICE, MALLORY, SERVICE, "ci-1", "ci-2"):
        iam.create_user(UserName=user)
    for user in (MALLORY, SERVICE):
        iam.add_user_to_group(GroupName="ProdAdmins", UserName=user)

    def members() -> set[str]:
        return {u["UserName"] for u in iam.get_group(GroupName="ProdAdmins")["Users"]}

    strategy = {
        "type": "aws_iam",
        "integration": "aws",
        "targets": [target("prod", "Prod Admins", group_name="ProdAdmins")],
    }
    bot = await launch.start(
        flows_file(
            reconciling_flow("iam_prod", strategy, "revoke"),
            integrations={"aws": {"type": "aws", "region": REGION, "endpoint_url": moto.url}},
        )
    )
    await grant_alice(bot, "iam_prod")
    assert await asyncio.to_thread(members) == {ALICE, MALLORY, SERVICE}

    results = await bot.runtime.reconciler.run_due()

    assert results["iam_prod"].removed == 1
    assert await asyncio.to_thread(members) == {ALICE, SERVICE}
    await wait_alert(bot, MALLORY)
    assert ("drift.removed", MALLORY) in await drift_audit(bot)


async def test_aws_sso_an_account_assignment_without_a_grant_is_removed(launch, moto):
    sso = seed_identity_center(moto, email=ALICE)
    identity_store = moto.client("identitystore")
    mallory = identity_store.create_user(
        IdentityStoreId=sso.identity_store_id,
        UserName="mallory",
        DisplayName="Mallory",
        Name={"GivenName": "Mallory", "FamilyName": "Intruder"},
        Emails=[{"Value": MALLORY, "Primary": True}],
    )["UserId"]
    sso.admin.create_account_assignment(**{**sso.assignment(), "PrincipalId": mallory})
    holders: Callable[[], list[str]] = sso.holders

    strategy = {
        "type": "aws_sso",
        "integration": "aws",
        "instance_arn": sso.instance_arn,
        "targets": [target("prod", "Prod Admins", permission_set_arn=sso.permission_set_arn, account_id=ACCOUNT)],
    }
    bot = await launch.start(
        flows_file(
            reconciling_flow("sso_prod", strategy, "revoke"),
            integrations={"aws": {"type": "aws", "region": REGION, "endpoint_url": moto.url}},
        )
    )
    await grant_alice(bot, "sso_prod")
    assert sorted(await asyncio.to_thread(holders)) == sorted([sso.user_id, mallory])

    results = await bot.runtime.reconciler.run_due()

    assert results["sso_prod"].removed == 1
    assert await asyncio.to_thread(holders) == [sso.user_id]
    # Named by the Identity Store user name, with the email it matched on.
    assert "mallory" in await wait_alert(bot, "mallory holds sso_prod/prod")
    assert ("drift.removed", "mallory") in await drift_audit(bot)


async def test_okta_a_removal_that_fails_is_alerted_once_and_tried_again_until_it_works(launch, okta):
    mallory = okta.add_user(MALLORY)
    group = okta.add_group("prod-admins")
    okta.members[group].add(mallory)
    bot = await launch.start(okta_flows(okta, group, "revoke"))
    okta.deny_writes = True  # Okta refuses membership changes (403)

    first = await bot.runtime.reconciler.run_due()
    assert first["okta_prod"].found == 1 and first["okta_prod"].removed == 0
    assert okta.is_member(group, mallory)
    assert "Removing it failed" in await wait_alert(bot, MALLORY)
    bot.clock.advance(hours=1)
    await bot.runtime.reconciler.run_due()
    assert len(alerts_about(bot, MALLORY)) == 1 and okta.is_member(group, mallory)

    okta.deny_writes = False
    bot.clock.advance(hours=1)
    assert (await bot.runtime.reconciler.run_due())["okta_prod"].removed == 1
    assert not okta.is_member(group, mallory)
    actions = [a for a, holder in await drift_audit(bot) if holder == MALLORY]
    assert actions == ["drift.found", "drift.remove_failed", "drift.removed"]


async def test_okta_a_live_grant_of_another_flow_on_the_same_group_covers_its_holder(launch, okta):
    alice = okta.add_user(ALICE)
    group = okta.add_group("prod-admins")
    strategy = okta_strategy("okta", target("prod", "Prod Admins", group_id=group))
    plain = flow("okta_plain", "Prod Admins (no reconcile)", strategy, reason_and_duration("30m"))
    flows = flows_file(
        plain,
        reconciling_flow("okta_prod", strategy, "revoke"),
        integrations={"okta": okta_integration(okta.url, okta.api_token)},
    )
    bot = await launch.start(flows)
    await grant_alice(bot, "okta_plain")

    results = await bot.runtime.reconciler.run_due()

    assert list(results) == ["okta_prod"] and results["okta_prod"].found == 0
    assert okta.is_member(group, alice)
    assert alerts_about(bot, ALICE) == []


async def test_okta_a_grant_recorded_while_the_group_is_being_listed_is_not_drift(launch, okta, monkeypatch):
    alice = okta.add_user(ALICE)
    group = okta.add_group("prod-admins")
    bot = await launch.start(okta_flows(okta, group, "revoke"))
    strategy = bot.runtime.strategies["okta_prod"]
    list_holders = strategy.holders

    async def holders_then_a_grant_lands(target):
        listed = await list_holders(target)
        # Alice's request is approved and granted while the listing is on its way back.
        message = await bot.request("U_ALICE", "okta_prod", "C_APPROVALS", target="Prod Admins", duration="30m")
        await bot.approve(message)
        return listed

    okta.members[group].add(alice)  # she is listed (as the grant lands in Okta)…
    monkeypatch.setattr(strategy, "holders", holders_then_a_grant_lands)

    results = await bot.runtime.reconciler.run_due()

    assert results["okta_prod"].found == 0, "…and the grant recorded meanwhile covers her"
    assert okta.is_member(group, alice)


# ── extensions and Revoke now: the access is still covered while it is held or being taken back ────


async def test_okta_access_handed_over_to_an_extension_is_covered_by_the_extension(launch, okta):
    alice = okta.add_user(ALICE)
    group = okta.add_group("prod-admins")
    bot = await launch.start(okta_flows(okta, group, "revoke"))
    await grant_alice(bot, "okta_prod")
    (first,) = await bot.engine.requests.list_by_status(RequestStatus.GRANTED)
    bot.clock.advance(minutes=10)
    extension = await bot.engine.extend(first.id, "U_ALICE", 1800)
    await bot.engine.approve(extension.id, "U_BOB")
    assert (await bot.engine.requests.get(first.id)).status is RequestStatus.REVOKED  # handed over
    assert (await bot.engine.requests.get(extension.id)).status is RequestStatus.GRANTED

    bot.clock.advance(minutes=25)  # past the first grant's own end, within the extension's
    results = await bot.runtime.reconciler.run_due()

    assert results["okta_prod"].found == 0 and results["okta_prod"].removed == 0
    assert okta.is_member(group, alice), "the live extension covers her"
    assert await drift_audit(bot) == []


async def test_okta_a_revoke_now_still_being_retried_is_not_drift(launch, okta):
    alice = okta.add_user(ALICE)
    group = okta.add_group("prod-admins")
    bot = await launch.start(okta_flows(okta, group, "revoke"))
    await grant_alice(bot, "okta_prod")
    (granted,) = await bot.engine.requests.list_by_status(RequestStatus.GRANTED)
    okta.deny_writes = True  # the revoke fails: the grant is ending, retried by the sweep
    await bot.engine.revoke_now(granted.id, "U_ALICE")
    ending = await bot.engine.requests.get(granted.id)
    assert ending.status is RequestStatus.GRANTED and ending.revoked_by == "U_ALICE"

    results = await bot.runtime.reconciler.run_due()

    assert results["okta_prod"].found == 0, "the revocation in flight is the bot's own, not drift"
    assert okta.is_member(group, alice) and await drift_audit(bot) == []
    okta.deny_writes = False
