"""Who the requester is in the target system, end to end: unknown users and stored identity overrides.

The bot runs in-process against the Slack emulator (real Socket Mode), the Okta fake and moto.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from core.models import RequestStatus
from tests.e2e.flows import flow, flows_file, okta_integration, okta_strategy, reason_and_duration, target
from tests.e2e.harness import RunningBot
from tests.e2e.test_aws_sso_e2e import sso_flows
from tests.fakes.moto_server import SSO_ACCOUNT, seed_identity_center
from tests.fakes.okta_api import OktaFake

OKTA_TOKEN = "00okta-identity-e2e-token"


@pytest.fixture
async def okta() -> AsyncIterator[OktaFake]:
    async with OktaFake(api_token=OKTA_TOKEN) as fake:
        yield fake


def okta_flows(okta_url: str, group_id: str, *, hooks: str | None = None) -> str:
    """One Okta flow granting the group `group_id` as "SRE on-call tools"."""
    strategy = okta_strategy("okta_main", target("sre", "SRE on-call tools", group_id=group_id))
    return flows_file(
        flow("okta_groups", "Okta groups", strategy, reason_and_duration("10s", "30m"), hooks=hooks),
        integrations={"okta_main": okta_integration(okta_url, OKTA_TOKEN)},
    )


async def assert_refused_by_slack_email(bot: RunningBot, flow: str, target: str) -> None:
    """Alice's submit is refused inline naming her Slack email (the target system does not know it); close it."""
    refused = await bot.submit("U_ALICE", flow, target=target)
    assert refused.response_action == "errors" and "alice@example.com" in refused.errors["target"]
    await bot.slack.close_view(refused.view)


async def test_a_user_okta_does_not_know_gets_an_inline_error_naming_okta_and_nothing_is_posted(launch, okta):
    group = okta.add_group("SRE")
    okta.add_user("alice@example.com")
    bot = await launch.start(okta_flows(okta.url, group))

    result = await bot.submit("U_BOB", "okta_groups", target="SRE on-call tools")

    assert result.response_action == "errors" and set(result.errors) == {"target"}
    assert "Okta" in result.errors["target"] and "bob@example.com" in result.errors["target"]
    assert bot.slack.messages_in("C_APPROVALS") == [] and bot.slack.calls("chat.postMessage") == []
    assert await bot.all_requests() == []
    assert okta.calls_to("PUT") == []


async def test_an_okta_login_override_is_used_instead_of_the_slack_email(launch, okta):
    group = okta.add_group("SRE")
    # Alice's Okta login and email both differ from her Slack email (alice@example.com).
    alice_okta = okta.add_user("alice.admin", email="alice.a@corp.example")
    bot = await launch.start(okta_flows(okta.url, group))

    await assert_refused_by_slack_email(bot, "okta_groups", "SRE on-call tools")

    await bot.engine.identities.set("U_ALICE", "okta_main", "alice.admin", actor="U_ADMIN")
    message = await bot.request("U_ALICE", "okta_groups", "C_APPROVALS", target="SRE on-call tools", duration="10s")
    await bot.approve(message)
    assert okta.members[group] == {alice_okta}
    request = await bot.request_for(message)
    assert request.grant_state["okta_user_id"] == alice_okta

    bot.clock.advance(seconds=10)
    await bot.engine.sweep()
    await bot.slack.wait_for_dm("U_ALICE", contains="expired")
    assert okta.members[group] == set()
    assert (await bot.engine.requests.get(request.id)).status is RequestStatus.REVOKED


async def test_a_wildcard_override_picks_the_identity_center_user_by_user_name(launch, moto):
    # In Identity Center Alice is `asmith`, with an email Slack does not know.
    sso = seed_identity_center(moto, user_name="asmith", email="asmith@corp.example")
    bot = await launch.start(sso_flows(moto.url, sso))
    await assert_refused_by_slack_email(bot, "aws_prod", "Prod Admin")

    await bot.engine.identities.set("U_ALICE", "*", "asmith", actor="U_ADMIN")

    message = await bot.request("U_ALICE", "aws_prod", "C_APPROVALS", target="Prod Admin", duration="10s")
    await bot.approve(message)
    assert await asyncio.to_thread(sso.holders) == [sso.user_id]

    bot.clock.advance(seconds=10)
    await bot.engine.sweep()
    assert await asyncio.to_thread(sso.holders) == []
    assert (await bot.request_for(message)).grant_state["account_id"] == SSO_ACCOUNT


async def test_hooks_see_the_override_identity_of_the_requester(launch, okta):
    group = okta.add_group("Okta users")
    oncall = okta.add_group("SRE")
    alice_okta = okta.add_user("alice.admin", email="alice.a@corp.example")
    okta.members[oncall].add(alice_okta)
    launch.write(
        "hooks.py",
        f"""\
        SEEN = []

        async def on_request(evt):
            SEEN.append(evt.user.identity)
            # is_user_in_group looks the person up by evt.user.identity, else by email.
            if await evt.integrations.okta_main.is_user_in_group(evt.user, "{oncall}"):
                return evt.approve("member of SRE in Okta")
        """,
    )
    bot = await launch.start(okta_flows(okta.url, group, hooks="hooks.py"))
    await bot.engine.identities.set("U_ALICE", "okta_main", "alice.admin", actor="U_ADMIN")

    message = await bot.request("U_ALICE", "okta_groups", "C_APPROVALS", target="SRE on-call tools")
    # Fast-tracked: the hook's verdict is applied before anything is posted, so the first DM says granted.
    await bot.slack.wait_for_dm("U_ALICE", contains="is granted")
    assert bot.hook_module("okta_groups").SEEN == ["alice.admin"]
    await bot.slack.wait_for_message(
        "C_APPROVALS", contains="member of SRE in Okta", where=lambda m: m.ts == message.ts
    )
    assert okta.members[group] == {alice_okta}
