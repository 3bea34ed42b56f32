"""Approval policy through the Slack emulator: several approvals, deny reasons, who may ask, who is told.

Each test is a story a security team asked for (docs/slack-behaviour.md): two approvers needed, the
requester and a repeat click not counting, an Approve racing a Deny, a deny reason reaching the
requester, a requester outside `requesters:` not seeing the flow, the pending message naming who decides.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

from core.errors import NotAllowed
from core.models import RequestStatus
from tests.e2e.conftest import SECRET_ENV, WEBHOOK_SECRET, standard_flow
from tests.e2e.flows import APPROVAL_CHANNEL, flows_file
from tests.e2e.harness import command_answer

TWO_OF_SECOPS = {"approvals_required": 2}


async def two_approvals_bot(launch, receiver, monkeypatch, **keys):
    """The standard webhook flow (approvers @secops: Bob, Carol, and Dave added) needing two approvals."""
    monkeypatch.setenv(SECRET_ENV, WEBHOOK_SECRET)
    launch.slack.add_user("U_DAVE", email="dave@example.com", name="dave")
    launch.slack.workspace.usergroups["S_SECOPS"].users.append("U_DAVE")
    return await launch.start(flows_file(standard_flow(receiver.url, **{**TWO_OF_SECOPS, **keys})))


async def ephemeral_after(bot, user: str, before: int) -> str:
    await bot.slack.wait_for(lambda: len(bot.slack.ephemerals_to(user)) > before, description=f"a note to {user}")
    return bot.slack.ephemerals_to(user)[-1].plain


async def test_two_approvals_are_needed_and_the_message_counts_them(launch, receiver, monkeypatch):
    bot = await two_approvals_bot(launch, receiver, monkeypatch)
    message = await bot.request("U_ALICE", "db_access", APPROVAL_CHANNEL, target="Prod Admin")
    assert "0 of 2 approvals" in message.plain

    await bot.slack.click(message, text="Approve", user="U_BOB")
    await bot.idle()
    after_one = bot.slack.message(APPROVAL_CHANNEL, message.ts)
    assert "1 of 2 approvals: <@U_BOB>" in after_one.plain
    assert after_one.button_texts == ["Approve", "Deny"]  # buttons kept until the last approval
    assert receiver.accepted("grant") == []

    await bot.approve(after_one, "U_CAROL")
    (request,) = await bot.all_requests()
    assert request.status is RequestStatus.GRANTED and request.approvals == ("U_BOB", "U_CAROL")
    assert len(receiver.accepted("grant")) == 1
    actions = [e.action for e in await bot.audit(request.id)]
    assert actions.count("request.approval_counted") == 2 and "request.approved" in actions


async def test_a_repeat_click_by_the_same_approver_says_so_and_changes_nothing(launch, receiver, monkeypatch):
    bot = await two_approvals_bot(launch, receiver, monkeypatch)
    message = await bot.request("U_ALICE", "db_access", APPROVAL_CHANNEL, target="Prod Admin")
    await bot.slack.click(message, text="Approve", user="U_BOB")
    await bot.idle()
    before = len(bot.slack.ephemerals_to("U_BOB"))
    await bot.slack.click(message, text="Approve", user="U_BOB")
    assert "already approved" in await ephemeral_after(bot, "U_BOB", before)

    (request,) = await bot.all_requests()
    assert request.status is RequestStatus.PENDING and request.approvals == ("U_BOB",)
    assert receiver.accepted("grant") == []
    refused = [e for e in await bot.audit(request.id) if e.action == "click.refused"]
    assert len(refused) == 1 and refused[0].actor == "U_BOB"


async def test_the_requester_never_counts_even_when_self_approval_is_allowed(launch, receiver, monkeypatch):
    monkeypatch.setenv(SECRET_ENV, WEBHOOK_SECRET)
    flow = standard_flow(receiver.url, approvers=None, allow_self_approval=True, **TWO_OF_SECOPS)
    bot = await launch.start(flows_file(flow))
    message = await bot.request("U_ALICE", "db_access", APPROVAL_CHANNEL, target="Prod Admin")
    before = len(bot.slack.ephemerals_to("U_ALICE"))
    await bot.slack.click(message, text="Approve", user="U_ALICE")
    assert "own approval never counts" in await ephemeral_after(bot, "U_ALICE", before)
    (request,) = await bot.all_requests()
    assert request.approvals == () and request.status is RequestStatus.PENDING

    await bot.slack.click(message, text="Approve", user="U_BOB")
    await bot.idle()
    await bot.approve(message, "U_CAROL")
    assert len(receiver.accepted("grant")) == 1


async def test_one_deny_denies_a_request_that_already_has_an_approval(launch, receiver, monkeypatch):
    bot = await two_approvals_bot(launch, receiver, monkeypatch)
    message = await bot.request("U_ALICE", "db_access", APPROVAL_CHANNEL, target="Prod Admin")
    await bot.slack.click(message, text="Approve", user="U_BOB")
    await bot.idle()
    await bot.deny(message, "U_CAROL", reason="not during the freeze")

    denied = bot.slack.message(APPROVAL_CHANNEL, message.ts)
    assert "Denied by <@U_CAROL>" in denied.plain and not denied.buttons
    assert receiver.accepted("grant") == []


async def test_an_approve_racing_a_deny_ends_one_way_only(launch, receiver, monkeypatch):
    bot = await two_approvals_bot(launch, receiver, monkeypatch)
    message = await bot.request("U_ALICE", "db_access", APPROVAL_CHANNEL, target="Prod Admin")
    await bot.slack.click(message, text="Approve", user="U_BOB")
    await bot.idle()
    (request,) = await bot.all_requests()

    # The last approval and a deny arrive together; each is a compare-and-set, so exactly one wins.
    outcomes = await asyncio.gather(
        bot.engine.approve(request.id, "U_CAROL"),
        bot.engine.deny(request.id, "U_DAVE", reason="no"),
        return_exceptions=True,
    )
    (request,) = await bot.all_requests()
    assert request.status in (RequestStatus.GRANTED, RequestStatus.DENIED)
    assert sum(isinstance(o, NotAllowed) for o in outcomes) == 1
    assert len(receiver.accepted("grant")) == (1 if request.status is RequestStatus.GRANTED else 0)


async def test_a_fast_track_by_on_request_counts_as_every_approval(launch, receiver, monkeypatch):
    monkeypatch.setenv(SECRET_ENV, WEBHOOK_SECRET)
    launch.write("hooks.py", "def on_request(evt):\n    return evt.approve('on call')\n")
    flow = standard_flow(receiver.url, **TWO_OF_SECOPS)
    flow["hooks"] = "hooks.py"
    bot = await launch.start(flows_file(flow))
    message = await bot.request("U_ALICE", "db_access", APPROVAL_CHANNEL, target="Prod Admin")
    assert "granted until" in message.plain and "on call" in message.plain
    assert len(receiver.accepted("grant")) == 1


async def test_get_approvers_naming_too_few_people_for_the_threshold_fails_closed(launch, receiver, monkeypatch):
    monkeypatch.setenv(SECRET_ENV, WEBHOOK_SECRET)
    # The hook names the requester and one other person: one approval possible, two needed.
    launch.write("hooks.py", "def get_approvers(evt):\n    return ['U_ALICE', 'U_BOB']\n")
    flow = standard_flow(receiver.url, **TWO_OF_SECOPS)
    flow["hooks"] = "hooks.py"
    bot = await launch.start(flows_file(flow))
    message = await bot.request("U_ALICE", "db_access", APPROVAL_CHANNEL, target="Prod Admin")
    assert not message.buttons and "Nobody may approve" in message.plain
    alert = await bot.slack.wait_for_message("C_ALERTS", contains="Nobody may approve")
    assert "needs 2 approvals" in alert.plain


# ── deny with a reason ───────────────────────────────────────────────────────────────────────────


async def test_a_deny_reason_reaches_the_message_the_requesters_dm_and_the_audit(bot):
    message = await bot.request()
    await bot.running.deny(message, "U_CAROL", reason="Use the read replica <!channel> instead")

    denied = bot.slack.message(APPROVAL_CHANNEL, message.ts)
    assert "Use the read replica" in denied.plain and not denied.buttons
    assert "<!channel>" not in str(denied.blocks)  # the reason is escaped, never a broadcast
    dm = await bot.slack.wait_for_dm("U_ALICE", contains="denied")
    assert "Use the read replica" in dm.plain
    (request,) = await bot.engine.requests.list_by_status(RequestStatus.DENIED)
    (event,) = [e for e in await bot.engine.audit.for_request(request.id) if e.action == "request.denied"]
    assert event.actor == "U_CAROL" and "read replica" in event.detail["reason"]


async def test_a_deny_without_a_reason_still_denies(bot):
    message = await bot.request()
    await bot.running.deny(message, "U_BOB")
    denied = await bot.slack.wait_for_message(APPROVAL_CHANNEL, contains="Denied by <@U_BOB>")
    assert denied.ts == message.ts
    (request,) = await bot.engine.requests.list_by_status(RequestStatus.DENIED)
    assert request.decision_reason is None


async def test_the_requesters_own_deny_opens_no_modal(bot):
    message = await bot.request()
    await bot.slack.click(message, text="Deny", user="U_ALICE")
    await bot.running.idle()
    assert not bot.slack.open_views("U_ALICE")
    # Decided by the engine at once: the requester's own Deny withdraws the request (docs/slack-behaviour.md).
    assert (await bot.running.request_for(message)).status is RequestStatus.CANCELLED


async def test_a_deny_modal_submitted_after_someone_approved_changes_nothing(bot):
    message = await bot.request()
    await bot.slack.click(message, text="Deny", user="U_CAROL")
    view = await bot.slack.wait_for_view("U_CAROL", contains="Deny request")
    await bot.running.approve(message, "U_BOB")
    await bot.slack.submit_view(view, {"deny-reason": "too late"})
    await bot.running.idle()
    assert "already granted" in bot.slack.ephemerals_to("U_CAROL")[-1].plain
    (request,) = await bot.engine.requests.list_by_status(RequestStatus.GRANTED)
    assert request.decision_reason is None


# ── who may ask ──────────────────────────────────────────────────────────────────────────────────


def two_flows(receiver_url: str) -> str:
    restricted = standard_flow(receiver_url, requesters={"users": ["U_BOB"], "usergroups": ["S_ONCALL"]})
    open_flow = {**standard_flow(receiver_url), "name": "staging", "label": "Staging"}
    return flows_file(restricted, open_flow)


async def test_a_requester_outside_requesters_does_not_see_the_flow_and_is_refused(launch, receiver, monkeypatch):
    monkeypatch.setenv(SECRET_ENV, WEBHOOK_SECRET)
    launch.slack.add_usergroup("S_ONCALL", handle="oncall", users=["U_CAROL"])
    bot = await launch.start(two_flows(receiver.url))

    await bot.slack.slash_command(user="U_ALICE", command="/sym")
    view = await bot.slack.wait_for_view("U_ALICE", contains="Request access")
    assert "Staging" in str(view.blocks) and "Database Access" not in str(view.blocks)
    await bot.slack.close_view(view)

    assert "not one of the people who may request Database Access" in await command_answer(
        bot.slack, "U_ALICE", "db_access"
    )
    with pytest.raises(NotAllowed, match="not one of the people"):
        await bot.engine.may_request("db_access", "U_ALICE")

    # Listed by name, and by user group: both see it and may ask.
    await bot.engine.may_request("db_access", "U_BOB")
    await bot.engine.may_request("db_access", "U_CAROL")
    message = await bot.request("U_CAROL", "db_access", APPROVAL_CHANNEL, target="Prod Admin")
    assert "<@U_CAROL> requests" in message.plain


async def test_a_form_opened_before_removal_from_the_group_is_refused_at_submit(launch, receiver, monkeypatch):
    monkeypatch.setenv(SECRET_ENV, WEBHOOK_SECRET)
    group = launch.slack.add_usergroup("S_ONCALL", handle="oncall", users=["U_CAROL"])
    bot = await launch.start(two_flows(receiver.url))
    await bot.slack.slash_command(user="U_CAROL", command="/sym", text="db_access")
    view = await bot.slack.wait_for_view("U_CAROL", contains="Request access")
    group.users.remove("U_CAROL")  # off the rota while the form is open: read fresh at submit
    result = await bot.slack.submit_view(view, {"target": "Prod Admin", "field:reason": "x", "field:duration": "30m"})
    assert result.response_action == "errors" and "not one of the people" in str(result.ack_payload)
    assert await bot.all_requests() == []


async def test_requesters_are_checked_before_on_request_runs(launch, receiver, monkeypatch):
    monkeypatch.setenv(SECRET_ENV, WEBHOOK_SECRET)
    launch.write("hooks.py", "CALLS = []\nasync def on_request(evt):\n    CALLS.append(evt.user.slack_id)\n")
    flow = standard_flow(receiver.url, requesters={"users": ["U_BOB"]})
    flow["hooks"] = "hooks.py"
    bot = await launch.start(flows_file(flow))
    with pytest.raises(Exception, match="not one of the people"):
        await bot.engine.prepare("db_access", "U_ALICE", "prod_admin", {"reason": "x"}, timedelta(minutes=30))
    assert bot.hook_module("db_access").CALLS == []


# ── who decides is visible ───────────────────────────────────────────────────────────────────────


async def test_the_pending_message_names_who_decides_when_it_expires_and_the_identity(bot):
    message = await bot.request()
    assert "Who decides:" in message.plain and "<!subteam^S_SECOPS>" in message.plain
    assert "Expires:" in message.plain and "<!date^" in str(message.blocks)
    assert "alice@example.com in" in message.plain  # the identity the grant will be made for
    approved = await bot.running.approve(message, "U_BOB")
    assert "Who decides" not in approved.plain  # only while it waits


# ── Block Kit limits ─────────────────────────────────────────────────────────────────────────────


async def test_every_message_stays_within_block_kit_limits_with_2_of_5_50_approvers_and_long_reasons(
    launch, receiver, monkeypatch
):
    monkeypatch.setenv(SECRET_ENV, WEBHOOK_SECRET)
    deciders = [f"U_APPROVER{i:02d}" for i in range(50)]
    for user in deciders[:5]:
        launch.slack.add_user(user, email=f"{user.lower()}@example.com")
    launch.slack.add_usergroup("S_DBA", users=deciders[:5])
    launch.slack.add_usergroup("S_X", users=["U_CAROL"])
    reminders = {"every": "30m", "escalate_after": "1h", "escalate_to": {"users": deciders[:40], "usergroups": ["S_X"]}}
    flow = standard_flow(
        receiver.url,
        approvers={"users": deciders, "usergroups": ["S_SECOPS", "S_DBA"]},
        approvals_required=2,
        reminders=reminders,
        request_timeout="8h",
    )
    bot = await launch.start(flows_file(flow))
    long_reason = "because " + "the incident needs & <access> " * 200  # the text field takes 3000 characters
    message = await bot.request(
        "U_ALICE", "db_access", APPROVAL_CHANNEL, target="Prod Admin", reason=long_reason[:3000]
    )
    assert "and 2 more" in message.plain  # 52 deciders: 50 named, the rest counted
    bot.clock.advance(hours=1)
    await bot.engine.sweep()  # the escalation, mentioning 41 more people
    await bot.slack.click(message, text="Approve", user="U_APPROVER00")
    await bot.idle()
    assert "1 of 2 approvals" in bot.slack.message(APPROVAL_CHANNEL, message.ts).plain
    await bot.deny(message, "U_APPROVER01", reason=("<!channel> & " * 50)[:500])  # the longest the modal takes

    (request,) = await bot.all_requests()
    assert request.status is RequestStatus.DENIED and len(request.decision_reason or "") == 500
    # Every payload above went through the emulator's Block Kit validator; any breach is a problem.
    assert launch.slack.unexpected_problems() == []


async def test_a_flow_whose_approver_groups_are_too_small_for_its_threshold_is_alerted_at_start(
    launch, receiver, monkeypatch
):
    monkeypatch.setenv(SECRET_ENV, WEBHOOK_SECRET)
    # @secops has two members; three approvals can never be given. Only Slack knows, so: an alert.
    await launch.start(flows_file(standard_flow(receiver.url, approvals_required=3)))
    alert = await launch.slack.wait_for_message("C_ALERTS", contains="needs 3 approvals")
    assert "db_access" in alert.plain and "only 2 people" in alert.plain


# ── guests ───────────────────────────────────────────────────────────────────────────────────────


async def test_a_guest_listed_in_requesters_still_needs_allow_guests(launch, receiver, monkeypatch):
    monkeypatch.setenv(SECRET_ENV, WEBHOOK_SECRET)
    launch.slack.add_user("U_GUEST", email="guest@contractor.example", guest="multi")
    listed = {"users": ["U_GUEST", "U_ALICE"]}
    bot = await launch.start(flows_file(standard_flow(receiver.url, requesters=listed)), db_name="closed.db")
    assert "Guests" in await command_answer(bot.slack, "U_GUEST", "db_access")
    with pytest.raises(NotAllowed, match="Guests"):
        await bot.engine.may_request("db_access", "U_GUEST")

    opened = await launch.start(
        flows_file(standard_flow(receiver.url, requesters=listed, allow_guests=True)), name="open.yaml", db_name="o.db"
    )
    await opened.engine.may_request("db_access", "U_GUEST")


async def test_a_guest_named_in_escalate_to_cannot_decide_without_allow_guests(launch, receiver, monkeypatch):
    monkeypatch.setenv(SECRET_ENV, WEBHOOK_SECRET)
    launch.slack.add_user("U_GUEST", email="guest@contractor.example", guest="single")
    reminders = {"every": "30m", "escalate_after": "1h", "escalate_to": {"users": ["U_GUEST"]}}
    bot = await launch.start(flows_file(standard_flow(receiver.url, reminders=reminders, request_timeout="4h")))
    message = await bot.request("U_ALICE", "db_access", APPROVAL_CHANNEL, target="Prod Admin")
    bot.clock.advance(hours=1)
    await bot.engine.sweep()
    await bot.slack.click(message, text="Approve", user="U_GUEST")
    await bot.slack.wait_for_ephemeral("U_GUEST", contains="Guests")
    assert receiver.accepted("grant") == []


async def test_a_user_group_slack_does_not_know_is_alerted_at_start(launch, receiver, monkeypatch):
    monkeypatch.setenv(SECRET_ENV, WEBHOOK_SECRET)
    await launch.start(flows_file(standard_flow(receiver.url, requesters={"usergroups": ["S_GONE"]})))
    alert = await launch.slack.wait_for_message("C_ALERTS", contains="S_GONE")
    assert "requesters" in alert.plain and "db_access" in alert.plain


# ── where hooks meet the policy (docs/hooks.md) ──────────────────────────────────────────────────


async def test_on_approve_is_asked_at_each_approval_and_a_refused_one_is_not_counted(launch, receiver, monkeypatch):
    monkeypatch.setenv(SECRET_ENV, WEBHOOK_SECRET)
    launch.write(
        "hooks.py",
        """\
        def on_approve(evt):
            if evt.actor.slack_id == "U_CAROL":
                return evt.ignore("Carol is on leave")
        """,
    )
    launch.slack.add_user("U_DAVE", email="dave@example.com")
    launch.slack.workspace.usergroups["S_SECOPS"].users.append("U_DAVE")
    flow = standard_flow(receiver.url, **TWO_OF_SECOPS)
    flow["hooks"] = "hooks.py"
    bot = await launch.start(flows_file(flow))
    message = await bot.request("U_ALICE", "db_access", APPROVAL_CHANNEL, target="Prod Admin")
    await bot.slack.click(message, text="Approve", user="U_BOB")
    await bot.idle()
    await bot.slack.click(message, text="Approve", user="U_CAROL")
    await bot.slack.wait_for_ephemeral("U_CAROL", contains="on leave")
    (request,) = await bot.all_requests()
    assert request.approvals == ("U_BOB",) and receiver.accepted("grant") == []
    await bot.approve(message, "U_DAVE")
    assert len(receiver.accepted("grant")) == 1


async def test_on_deny_sees_the_modal_submission_and_may_refuse_it(launch, receiver, monkeypatch):
    monkeypatch.setenv(SECRET_ENV, WEBHOOK_SECRET)
    launch.write(
        "hooks.py",
        """\
        def on_deny(evt):
            return evt.ignore("Only the incident commander may deny during an incident")
        """,
    )
    flow = standard_flow(receiver.url)
    flow["hooks"] = "hooks.py"
    bot = await launch.start(flows_file(flow))
    message = await bot.request("U_ALICE", "db_access", APPROVAL_CHANNEL, target="Prod Admin")
    await bot.deny(message, "U_CAROL", reason="no")
    await bot.slack.wait_for_ephemeral("U_CAROL", contains="incident commander")
    (request,) = await bot.all_requests()
    assert request.status is RequestStatus.PENDING


async def test_a_requester_among_too_few_static_approvers_gets_a_request_nobody_may_approve(
    launch, receiver, monkeypatch
):
    monkeypatch.setenv(SECRET_ENV, WEBHOOK_SECRET)
    # Two approvers listed, two approvals needed: valid, but when Bob asks only Alice is left.
    flow = standard_flow(receiver.url, approvers={"users": ["U_ALICE", "U_BOB"]}, **TWO_OF_SECOPS)
    bot = await launch.start(flows_file(flow))
    message = await bot.request("U_BOB", "db_access", APPROVAL_CHANNEL, target="Prod Admin")
    assert not message.buttons and "Nobody may approve" in message.plain
    alert = await bot.slack.wait_for_message("C_ALERTS", contains="Nobody may approve")
    assert "besides the requester are 1" in alert.plain
    ok = await bot.request("U_CAROL", "db_access", APPROVAL_CHANNEL, target="Prod Admin")
    assert ok.button_texts == ["Approve", "Deny"]  # Alice and Bob can both approve Carol's


async def test_an_earlier_approver_who_left_the_group_no_longer_counts_at_the_last_approval(
    launch, receiver, monkeypatch
):
    bot = await two_approvals_bot(launch, receiver, monkeypatch)
    message = await bot.request("U_ALICE", "db_access", APPROVAL_CHANNEL, target="Prod Admin")
    await bot.slack.click(message, text="Approve", user="U_BOB")
    await bot.idle()
    bot.slack.workspace.usergroups["S_SECOPS"].users.remove("U_BOB")  # Bob leaves security ops

    await bot.slack.click(message, text="Approve", user="U_CAROL")
    await bot.idle()
    (request,) = await bot.all_requests()
    assert request.status is RequestStatus.PENDING and request.approvals == ("U_CAROL",)
    assert "1 of 2 approvals: <@U_CAROL>" in bot.slack.message(APPROVAL_CHANNEL, message.ts).plain
    (withdrawn,) = [e for e in await bot.audit(request.id) if e.action == "request.approvals_withdrawn"]
    assert withdrawn.detail["approvers"] == ["U_BOB"]
    assert receiver.accepted("grant") == []

    await bot.approve(message, "U_DAVE")
    assert len(receiver.accepted("grant")) == 1
