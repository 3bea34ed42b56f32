"""Approval-only flows (no `strategy:`): a deploy gate records the decision and its window, with hooks."""

from __future__ import annotations

from pathlib import Path

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
    # Revoke now closes the approval window early, as it ends any live grant (docs/slack-behaviour.md).
    assert approved.ts == message.ts and [b["text"]["text"] for b in approved.buttons] == ["Revoke now"]
    dm = await bot.slack.wait_for_dm("U_ALICE", contains="was approved by <@U_BOB>")
    assert "valid until" in dm.plain
    (request,) = await bot.all_requests()
    assert request.status is RequestStatus.GRANTED
    await bot.idle()  # after_grant follows the DM in the background, in its own lane
    hooks = bot.hook_module("deploy_prod")
    assert hooks.GRANTED == [(request.id, "deploy_prod", "incident 42")]

    bot.clock.advance(minutes=30)
    await bot.engine.sweep()
    ended = await bot.slack.wait_for_message(APPROVAL_CHANNEL, contains="Approval window ended")
    assert ended.ts == message.ts
    await bot.slack.wait_for_dm("U_ALICE", contains="approval window")
    await bot.idle()  # after_revoke follows the recorded end in the background, after the DM
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


async def test_the_shipped_deploy_gate_hooks_open_and_close_the_window_in_ci(launch, monkeypatch):
    from aiohttp import web

    seen: list[tuple[str, dict]] = []

    async def receive(request: web.Request) -> web.Response:
        seen.append((request.headers.get("Authorization", ""), await request.json()))
        return web.json_response({"ok": True})

    app = web.Application()
    app.router.add_post("/gate", receive)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    monkeypatch.setenv("DEPLOY_GATE_URL", f"http://127.0.0.1:{port}/gate")
    monkeypatch.setenv("DEPLOY_GATE_TOKEN", "gate-token")
    try:
        shipped = Path(__file__).resolve().parents[2] / "config" / "hooks" / "deploy_gate.py"
        bot = await launch.start(deploy_gate().replace("deploy_hooks.py", str(shipped)))
        message = await bot.request("U_ALICE", "deploy_prod", APPROVAL_CHANNEL, target="Production deploy")
        await bot.slack.click(message, text="Approve", user="U_BOB")
        await bot.slack.wait_for_message(APPROVAL_CHANNEL, contains="approved until")
        await bot.idle()
        bot.clock.advance(minutes=30)
        await bot.engine.sweep()
        await bot.idle()
        assert [body["state"] for _, body in seen] == ["open", "closed"]
        assert all(auth == "Bearer gate-token" for auth, _ in seen)
        assert seen[0][1]["ticket"] == "incident 42" and seen[0][1]["by"] == "alice@example.com"
    finally:
        await runner.cleanup()


async def test_a_window_of_a_removed_approval_only_flow_still_ends_on_time_after_a_restart(
    launch, receiver, monkeypatch
):
    from tests.e2e.conftest import SECRET_ENV, WEBHOOK_SECRET, webhook_flows

    launch.write("deploy_hooks.py", DEPLOY_HOOKS)
    bot = await launch.start(deploy_gate())
    message = await bot.request("U_ALICE", "deploy_prod", APPROVAL_CHANNEL, target="Production deploy")
    await bot.slack.click(message, text="Approve", user="U_BOB")
    await bot.slack.wait_for_message(APPROVAL_CHANNEL, contains="approved until")
    await bot.stop()

    monkeypatch.setenv(SECRET_ENV, WEBHOOK_SECRET)
    again = await launch.start(webhook_flows(receiver.url), clock=bot.clock)  # deploy_prod is gone
    again.clock.advance(minutes=30)
    await again.engine.sweep()
    (request,) = await again.all_requests()
    assert request.status is RequestStatus.REVOKED
    assert receiver.deliveries == []  # nothing was ever sent anywhere
