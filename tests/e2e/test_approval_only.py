"""Approval-only flows (no `strategy:`): a deploy gate records the decision and its window, with hooks."""

from __future__ import annotations

from core.models import RequestStatus
from tests.e2e.flows import APPROVAL_CHANNEL, SECOPS, flows_file, reason_and_duration

DEPLOY_HOOKS = """\
GRANTED = []
REVOKED = []

async def after_grant(evt):
    GRANTED.append((evt.request_id, evt.target.name, evt.fields["reason"]))

async def after_revoke(evt):
    REVOKED.append(evt.request_id)
"""


def deploy_gate() -> str:
    flow = {
        "name": "deploy_prod",
        "label": "Production deploy",
        "approval_channel": APPROVAL_CHANNEL,
        "approvers": SECOPS,
        "fields": reason_and_duration("30m", "1h"),
        "hooks": "deploy_hooks.py",
    }
    return flows_file(flow)


async def test_an_approval_only_flow_records_the_decision_and_its_end_with_hooks_and_no_strategy(launch):
    launch.write("deploy_hooks.py", DEPLOY_HOOKS)
    bot = await launch.start(deploy_gate())
    message = await bot.request("U_ALICE", "deploy_prod", APPROVAL_CHANNEL, target="Production deploy")
    assert "Approval only" in message.plain and "Grants access as" not in message.plain

    await bot.slack.click(message, text="Approve", user="U_BOB")
    approved = await bot.slack.wait_for_message(APPROVAL_CHANNEL, contains="approved until")
    assert approved.ts == message.ts and not approved.buttons
    dm = await bot.slack.wait_for_dm("U_ALICE", contains="was approved by <@U_BOB>")
    assert "valid until" in dm.plain
    (request,) = await bot.all_requests()
    assert request.status is RequestStatus.GRANTED
    hooks = bot.hook_module("deploy_prod")
    assert hooks.GRANTED == [(request.id, "deploy_prod", "incident 42")]

    bot.clock.advance(minutes=30)
    await bot.engine.sweep()
    ended = await bot.slack.wait_for_message(APPROVAL_CHANNEL, contains="Approval window ended")
    assert ended.ts == message.ts
    await bot.slack.wait_for_dm("U_ALICE", contains="approval window")
    assert hooks.REVOKED == [request.id]
    actions = [e.action for e in await bot.audit(request.id)]
    assert [a for a in actions if a != "request.routed"][:3] == [
        "request.created",
        "request.approved",
        "access.granted",
    ]
    assert "access.revoked" in actions
    granted = next(e for e in await bot.audit(request.id) if e.action == "access.granted")
    assert granted.detail["system"] == "no system (approval only)"


async def test_an_approval_only_flow_can_be_denied_like_any_other(launch):
    launch.write("deploy_hooks.py", DEPLOY_HOOKS)
    bot = await launch.start(deploy_gate())
    message = await bot.request("U_ALICE", "deploy_prod", APPROVAL_CHANNEL, target="Production deploy")
    await bot.deny(message, "U_CAROL", reason="change freeze until Monday")
    dm = await bot.slack.wait_for_dm("U_ALICE", contains="denied")
    assert "change freeze" in dm.plain
    assert bot.hook_module("deploy_prod").GRANTED == []
