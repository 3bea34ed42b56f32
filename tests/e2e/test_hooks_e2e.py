"""Policy hooks (docs/hooks.md) end to end in a running bot, with the PagerDuty and Okta fakes.

Each test writes a hooks file into tmp_path, starts the production Runtime in-process against the
Slack emulator (real Socket Mode) and drives it as people would. The flow grants Okta groups, so a
grant is visible in the Okta fake's state, not only in the bot's.
"""

from __future__ import annotations

import textwrap
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from core.models import RequestStatus
from tests.e2e.botprocess import REPO, CliResult, clean_env, run_cli
from tests.e2e.flows import (
    flow,
    flows_file,
    minimal_webhook_flows,
    okta_integration,
    okta_strategy,
    reason_and_duration,
    target,
)
from tests.fakes.okta_api import OktaFake
from tests.fakes.pagerduty_api import PagerDutyApi

SHIPPED_HOOKS = REPO / "config" / "hooks"
GRANTS_URL = "https://grants.example.com/jitbot"  # never called: validate only reads the flows
PD_TOKEN = "pd-hooks-e2e-token"
OKTA_TOKEN = "00okta-hooks-e2e-token"


@dataclass
class World:
    """PagerDuty (Alice on call, Bob not) and Okta (everyone, a prod/staging group and an SRE group)."""

    pagerduty: PagerDutyApi
    okta: OktaFake
    prod_group: str
    staging_group: str
    sre_group: str
    okta_ids: dict[str, str]

    def flows(self, hooks: str | Path, **keys: str) -> str:
        """A flows file with the pagerduty and okta_main integrations and one Okta flow using `hooks`."""
        strategy = okta_strategy(
            "okta_main",
            target("prod_admin", "Prod Admin", group_id=self.prod_group),
            target("staging_ro", "Staging read-only", group_id=self.staging_group),
        )
        prod_access = flow(
            "prod_access", "Production access", strategy, reason_and_duration("10s", "30m", "1h"), hooks=hooks, **keys
        )
        pagerduty = {"type": "pagerduty", "api_token": PD_TOKEN, "base_url": self.pagerduty.url}
        return flows_file(
            prod_access, integrations={"pagerduty": pagerduty, "okta_main": okta_integration(self.okta.url, OKTA_TOKEN)}
        )

    def holds(self, person: str, group: str | None = None) -> bool:
        """Whether `person` (alice, bob…) is in the Okta group right now (prod by default)."""
        return self.okta.is_member(group or self.prod_group, self.okta_ids[person])


@pytest.fixture
async def world(slack) -> AsyncIterator[World]:
    slack.add_user("U_DAVE", email="dave@example.com", name="dave", real_name="Dave Outsider")
    async with PagerDutyApi(token=PD_TOKEN) as pagerduty, OktaFake(api_token=OKTA_TOKEN) as okta:
        pagerduty.add_user("PALICE", "alice@example.com")
        pagerduty.add_user("PBOB", "bob@example.com")
        pagerduty.add_oncall("PALICE", schedule_id="PPRIMARY")
        ids = {name: okta.add_user(f"{name}@example.com") for name in ("alice", "bob", "carol", "dave")}
        yield World(
            pagerduty,
            okta,
            okta.add_group("Prod admins"),
            okta.add_group("Staging readers"),
            okta.add_group("SRE"),
            ids,
        )


ONCALL_HOOK = """\
    async def on_request(evt):
        if await evt.integrations.pagerduty.is_on_call(evt.user):
            return evt.approve("on call in PagerDuty")
    """


async def request_prod(bot, user: str = "U_ALICE", channel: str = "C_APPROVALS", target: str = "Prod Admin"):
    """Submit a Prod Admin request and wait until the requester was told where it stands: sent for
    approval, or (fast-tracked by a hook, whose verdict comes before any post) already granted."""
    message = await bot.request(user, "prod_access", channel, target=target)
    await bot.slack.wait_for_dm(user, where=lambda m: "sent to" in (m.text or "") or "is granted" in (m.text or ""))
    return message


async def approve_as(bot, message, user: str):
    """`user` approves; the grant must be theirs (proof no hook decided it first) and really happen."""
    granted = await bot.approve(message, user)
    assert f"<@{user}>" in granted.plain and "policy hook" not in granted.plain
    request = await bot.request_for(message)
    approvals = [e.actor for e in await bot.audit(request.id) if e.action == "request.approved"]
    assert approvals == [user] and request.status is RequestStatus.GRANTED
    return request


async def assert_fast_tracks_alice_not_bob(bot, world: World, reason: str) -> None:
    """Alice's request is granted by the hook for `reason`; Bob's waits for a human (Carol approves it)."""
    alice = await request_prod(bot, user="U_ALICE")
    await bot.slack.wait_for_message("C_APPROVALS", contains=reason, where=lambda m: m.ts == alice.ts)
    assert world.holds("alice")
    bob = await request_prod(bot, user="U_BOB")
    assert bot.slack.message("C_APPROVALS", bob.ts).buttons and not world.holds("bob")
    await approve_as(bot, bob, "U_CAROL")


# ── on_request ────────────────────────────────────────────────────────────────────────────────────


async def test_an_on_call_requester_is_granted_without_a_click_and_the_post_says_so(launch, world):
    launch.write("hooks.py", ONCALL_HOOK)
    bot = await launch.start(world.flows("hooks.py"))
    message = await request_prod(bot)

    granted = await bot.slack.wait_for_message(
        "C_APPROVALS", contains="granted until", where=lambda m: m.ts == message.ts
    )
    assert "policy hook" in granted.plain and "on_request" in granted.plain and "on call in PagerDuty" in granted.plain
    assert [b["text"]["text"] for b in granted.buttons] == ["Revoke now"]  # no Approve / Deny
    assert world.holds("alice")
    await bot.slack.wait_for_dm("U_ALICE", contains="granted")
    request = await bot.request_for(message)
    (approval,) = [e for e in await bot.audit(request.id) if e.action == "request.approved"]
    assert approval.actor == "hook:hooks.py:on_request" and approval.detail["reason"] == "on call in PagerDuty"
    assert request.status is RequestStatus.GRANTED and request.decided_by == approval.actor


async def test_an_off_call_requester_waits_for_a_human(launch, world):
    launch.write("hooks.py", ONCALL_HOOK)
    bot = await launch.start(world.flows("hooks.py"))
    message = await request_prod(bot, user="U_BOB")

    assert {"Approve", "Deny"} <= set(bot.slack.message("C_APPROVALS", message.ts).button_texts)
    assert (await bot.request_for(message)).status is RequestStatus.PENDING
    assert world.okta.calls_to("PUT") == [] and not world.holds("bob")
    assert world.pagerduty.calls("/oncalls")  # the hook really asked PagerDuty

    await approve_as(bot, message, "U_CAROL")
    assert world.holds("bob")


FAILING_HOOKS = {
    "raises": (
        """\
        async def on_request(evt):
            raise RuntimeError("PagerDuty said no")
        """,
        "RuntimeError: PagerDuty said no",
    ),
    "sleeps past its limit": (
        """\
        import asyncio

        async def on_request(evt):
            await asyncio.sleep(30)
            return evt.approve("too late")
        """,
        "timed out after 1s",
    ),
    "blocks past its limit": (
        """\
        import time

        def on_request(evt):
            time.sleep(30)  # a sync hook runs in its own process, killed at the limit
            return evt.approve("too late")
        """,
        "timed out after 1s",
    ),
}


@pytest.mark.parametrize("source, error", FAILING_HOOKS.values(), ids=FAILING_HOOKS.keys())
async def test_a_hook_that_fails_leaves_the_request_for_humans_and_alerts(launch, world, source, error):
    hooks = launch.write("hooks.py", source)
    bot = await launch.start(world.flows("hooks.py", hook_timeout="1s"))
    message = await request_prod(bot)
    alert = await bot.slack.wait_for_message("C_ALERTS", contains="on_request")
    assert str(hooks) in alert.plain and error in alert.plain

    request = await bot.request_for(message)
    assert request.status is RequestStatus.PENDING and request.decided_by is None
    assert {"Approve", "Deny"} <= set(bot.slack.message("C_APPROVALS", message.ts).button_texts)
    assert not world.holds("alice")
    (failure,) = [e for e in await bot.audit(request.id) if e.action == "hook.failed"]
    assert failure.detail["hook"] == "on_request" and failure.detail["path"] == str(hooks)
    assert error in failure.detail["error"] and failure.actor == "hook:hooks.py:on_request"

    await approve_as(bot, message, "U_BOB")  # humans can still decide
    assert world.holds("alice")


async def test_on_request_can_check_an_okta_group(launch, world):
    world.okta.members[world.sre_group].add(world.okta_ids["alice"])
    launch.write(
        "hooks.py",
        f"""\
        SRE = "{world.sre_group}"

        async def on_request(evt):
            if await evt.integrations.okta_main.is_user_in_group(evt.user, SRE):
                return evt.approve("member of SRE in Okta")
        """,
    )
    bot = await launch.start(world.flows("hooks.py"))

    await assert_fast_tracks_alice_not_bob(bot, world, "member of SRE in Okta")


# ── routing ───────────────────────────────────────────────────────────────────────────────────────


async def test_routing_hooks_choose_the_channel_and_who_may_decide(launch, world, slack):
    slack.add_channel("C_PROD_APPROVALS", name="prod-approvals")
    launch.write(
        "hooks.py",
        """\
        def get_approval_channel(evt):
            return "C_PROD_APPROVALS" if evt.target.name.startswith("prod_") else None

        def get_approvers(evt):
            return ["U_CAROL"]
        """,
    )
    bot = await launch.start(world.flows("hooks.py"))

    staging = await request_prod(bot, target="Staging read-only")
    prod = await request_prod(bot, channel="C_PROD_APPROVALS")
    assert [m.ts for m in slack.messages_in("C_APPROVALS")] == [staging.ts]
    assert [m.ts for m in slack.messages_in("C_PROD_APPROVALS")] == [prod.ts]
    assert "U_CAROL" in prod.plain  # "waiting for approval from @Carol"
    request = await bot.request_for(prod)
    assert request.approval_channel == "C_PROD_APPROVALS" and tuple(request.approvers) == ("U_CAROL",)

    await slack.click(prod, text="Approve", user="U_BOB")
    await slack.wait_for_ephemeral("U_BOB", contains="not an approver")
    assert (await bot.engine.requests.get(request.id)).status is RequestStatus.PENDING
    assert not slack.message("C_PROD_APPROVALS", prod.ts).edited

    await approve_as(bot, prod, "U_CAROL")  # in C_PROD_APPROVALS, where the message is
    assert world.holds("alice")
    actions = [(e.action, e.actor) for e in await bot.audit(request.id)]
    assert ("request.routed", "hook:hooks.py") in actions and ("click.refused", "U_BOB") in actions


async def test_on_approve_refuses_a_click_from_outside_a_usergroup(launch, world, slack):
    launch.write(
        "hooks.py",
        """\
        async def on_approve(evt):
            if not await evt.integrations.slack.is_in_usergroup(evt.actor, "S_SECOPS"):
                return evt.ignore("Only @secops can approve production access.")
        """,
    )
    bot = await launch.start(world.flows("hooks.py"))
    message = await request_prod(bot)

    await slack.click(message, text="Approve", user="U_DAVE")
    refusal = await slack.wait_for_ephemeral("U_DAVE", contains="Only @secops")
    assert refusal.channel == "C_APPROVALS"
    request = await bot.request_for(message)
    assert request.status is RequestStatus.PENDING and not slack.message("C_APPROVALS", message.ts).edited
    assert world.okta.calls_to("PUT") == []
    (refused,) = [e for e in await bot.audit(request.id) if e.action == "click.refused"]
    assert refused.actor == "U_DAVE" and refused.detail == {
        "action": "approve",
        "reason": "Only @secops can approve production access.",
        "via": "slack",
    }

    await approve_as(bot, message, "U_BOB")  # Bob is in S_SECOPS
    assert world.holds("alice") and slack.ephemerals_to("U_BOB") == []


# ── the shipped examples in config/hooks/ ─────────────────────────────────────────────────────────


async def test_shipped_oncall_fasttrack_hook(launch, world):
    bot = await launch.start(world.flows(SHIPPED_HOOKS / "oncall_fasttrack.py"))
    await assert_fast_tracks_alice_not_bob(bot, world, "on call in PagerDuty")


async def test_shipped_route_production_hook(launch, world, slack):
    slack.add_channel("C0PRODAPPROVALS", name="prod-approvals")
    bot = await launch.start(world.flows(SHIPPED_HOOKS / "route_production.py"))
    await request_prod(bot, channel="C0PRODAPPROVALS", target="Prod Admin")
    await request_prod(bot, channel="C_APPROVALS", target="Staging read-only")


async def test_shipped_restrict_approvers_hook(launch, world, slack):
    slack.add_usergroup("S0SECOPS", handle="secops", users=["U_CAROL"])
    bot = await launch.start(world.flows(SHIPPED_HOOKS / "restrict_approvers.py"))
    message = await request_prod(bot)
    await slack.click(message, text="Approve", user="U_BOB")
    await slack.wait_for_ephemeral("U_BOB", contains="Only members of @secops")
    assert (await bot.request_for(message)).status is RequestStatus.PENDING
    await approve_as(bot, message, "U_CAROL")


# ── bot.py validate ───────────────────────────────────────────────────────────────────────────────

BROKEN_HOOKS = {
    "syntax error": (
        """\
        async def on_request(evt):
            return None

        def get_approvers(evt)
            return ["U_CAROL"]
        """,
        4,
        "syntax error",
    ),
    "misspelt hook": (
        '''\
        """Fast-track on-call engineers."""


        async def on_requst(evt):
            return evt.approve("on call")
        ''',
        4,
        "did you mean on_request",
    ),
}


async def run_validate(config: Path) -> CliResult:
    return await run_cli("validate", "--config", str(config), env=clean_env())


@pytest.mark.parametrize("source, line, message", BROKEN_HOOKS.values(), ids=BROKEN_HOOKS.keys())
async def test_validate_reports_a_broken_hooks_file_with_its_line(tmp_path, source, line, message):
    hooks = tmp_path / "hooks" / "policy.py"
    hooks.parent.mkdir()
    hooks.write_text(textwrap.dedent(source))
    config = tmp_path / "flows.yaml"
    config.write_text(minimal_webhook_flows(GRANTS_URL, "30m", hooks="hooks/policy.py"))

    result = await run_validate(config)
    output = result.stdout + result.stderr
    assert result.returncode == 2, output
    reported = [text for text in output.splitlines() if text.startswith(f"{hooks.resolve()}:{line}:")]
    assert reported and message in reported[0], output
    assert "Traceback" not in output


async def test_validate_accepts_the_same_flow_with_a_correct_hooks_file(tmp_path):
    (tmp_path / "policy.py").write_text(ONCALL_HOOK.replace("\n    ", "\n").strip() + "\n")
    config = tmp_path / "flows.yaml"
    config.write_text(minimal_webhook_flows(GRANTS_URL, "30m", hooks="policy.py"))
    result = await run_validate(config)
    assert result.returncode == 0, result.stdout + result.stderr
