"""The sandbox runs the real bot on the shipped flows file: a request is granted at the built-in
receiver, a guest is refused, and fast-forwarding the bot's clock ends the grant through its timers."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from sandbox.app import Sandbox
from sandbox.directory import DEFAULT_APPROVER_ID, OUTSIDER_ID, REQUESTER_ID
from tests.sandbox.conftest import SHIPPED_CONFIG, start_sandbox


async def request_and_approve(box: Sandbox, duration: str = "15m") -> str:
    """Riley asks for prod read-only access with the shipped form, Avery approves; the request id."""
    emu = box.emu
    assert emu is not None and box.ledger is not None
    await emu.slash_command(user=REQUESTER_ID, command="/sym")
    view = await emu.wait_for_view(REQUESTER_ID, contains="Request access")
    result = await emu.submit_view(
        view, {"target": "prod_readonly", "field:reason": "incident 42", "field:duration": duration}
    )
    assert result.errors == {}
    message = await emu.wait_for_message("C0APPROVALS", contains="Waiting for approval")
    await emu.click(message, user=DEFAULT_APPROVER_ID, text="Approve")
    # The bot has recorded the grant once the message says so (the receiver holds it a moment earlier).
    await emu.wait_for_message("C0APPROVALS", contains="access granted until")
    (request_id,) = box.ledger.holdings
    return request_id


async def test_the_shipped_flow_is_granted_at_the_built_in_receiver_and_fast_forward_ends_it(sandbox):
    request_id = await request_and_approve(sandbox)
    held = sandbox.ledger.holdings[request_id]
    assert (held.who, held.target, held.system) == ("riley@example.com", "Prod (read-only)", "webhook receiver")

    await sandbox.fast_forward(timedelta(minutes=15))

    assert sandbox.ledger.holdings == {}
    assert [c.action for c in sandbox.ledger.history] == ["grant", "revoke"]
    await sandbox.emu.wait_for_dm(REQUESTER_ID, contains="expired")


async def test_a_timer_armed_by_the_moved_clock_fires_on_its_own_without_another_sweep(sandbox):
    await request_and_approve(sandbox)
    # One second before the end: the sweep re-arms the revoke by the moved clock, due in a second.
    await sandbox.fast_forward(timedelta(minutes=15) - timedelta(seconds=1))
    assert sandbox.ledger.holdings, "nothing was due yet"

    await sandbox.emu.wait_for(lambda: not sandbox.ledger.holdings, timeout=10, description="the timer's revoke")
    await sandbox.emu.wait_for_dm(REQUESTER_ID, contains="expired")


async def test_the_outsider_is_a_guest_who_cannot_approve(sandbox):
    emu = sandbox.emu
    await emu.slash_command(user=REQUESTER_ID, command="/sym", text="db_access")
    view = await emu.wait_for_view(REQUESTER_ID, contains="Request access")
    await emu.submit_view(view, {"target": "staging_admin", "field:reason": "deploy", "field:duration": "1h"})
    message = await emu.wait_for_message("C0APPROVALS", contains="Waiting for approval")

    await emu.click(message, user=OUTSIDER_ID, text="Approve")

    await emu.wait_for_ephemeral(OUTSIDER_ID, contains="Guests")
    assert sandbox.ledger.holdings == {}


async def test_fast_forward_only_moves_forward_and_by_at_most_a_week(sandbox):
    for bad in (timedelta(0), timedelta(minutes=-5), timedelta(days=8)):
        with pytest.raises(ValueError):
            await sandbox.fast_forward(bad)
    assert sandbox.clock.offset == timedelta(0)


async def test_the_directory_matches_the_flows_file(monkeypatch, tmp_path: Path):
    config = tmp_path / "flows.yaml"
    config.write_text(
        """
slack: {alerts_channel: C0ALERTS}
flows:
  - name: db_access
    label: Database Access
    approval_channel: C0DBAPPROVALS
    approvers: {users: [U0ADMIN7], usergroups: [S0SECOPS]}
    strategy:
      type: webhook
      url: http://localhost:9000/grants
      secret: ${env:WEBHOOK_SECRET}
      targets: [{name: prod, label: Prod}]
    fields:
      - {name: reason, label: Why, type: text, required: true}
      - {name: duration, label: How long, type: duration, allowed_values: [15m, 1h], required: true}
"""
    )
    box = await start_sandbox(monkeypatch, config)
    try:
        workspace = box.emu.workspace
        assert {"C0DBAPPROVALS", "C0ALERTS"} <= set(workspace.channels)
        assert [p.id for p in box.people] == [REQUESTER_ID, "U0ADMIN7", OUTSIDER_ID]
        assert workspace.usergroups["S0SECOPS"].users == ["U0ADMIN7"]
        assert workspace.users[OUTSIDER_ID].is_restricted  # a guest
        assert box.notes == []  # a loopback webhook is exactly what the sandbox stands in for
    finally:
        await box.stop()


async def test_systems_it_cannot_reach_are_stood_in_for_and_said_so_in_one_line_each(monkeypatch, tmp_path: Path):
    config = tmp_path / "flows.yaml"
    config.write_text(
        """
integrations:
  okta_main: {type: okta, domain: example.okta.com, api_token: "${env:OKTA_API_TOKEN}"}
flows:
  - name: okta_admins
    label: Okta admins
    approval_channel: C0APPROVALS
    strategy:
      type: okta
      integration: okta_main
      targets: [{name: admins, label: Prod Admins, group_id: 00g1abcdEFGHijklm697}]
    fields:
      - {name: reason, label: Why, type: text, required: true}
      - {name: duration, label: How long, type: duration, allowed_values: [15m, 1h], required: true}
  - name: vendor
    label: Vendor portal
    approval_channel: C0APPROVALS
    strategy:
      type: webhook
      url: https://jitbot:hunter2@access.example.com/grants?token=s3cret
      secret: ${env:WEBHOOK_SECRET}
      targets: [{name: portal, label: Portal}]
    fields:
      - {name: reason, label: Why, type: text, required: true}
      - {name: duration, label: How long, type: duration, allowed_values: [15m, 1h], required: true}
"""
    )
    monkeypatch.setenv("OKTA_API_TOKEN", "never-used")
    box = await start_sandbox(monkeypatch, config)
    try:
        assert box.notes == [
            "flow okta_admins (okta): grants go to a stand-in that records them; Okta is not called",
            "flow vendor: delivers to the built-in receiver instead of https://access.example.com/grants",
            "integration okta_main (okta): not contacted; hooks that call it fail",
        ]
        emu = box.emu
        for flow, label, target, system in (
            ("okta_admins", "Okta admins", "admins", "Okta (stand-in)"),
            ("vendor", "Vendor portal", "portal", "webhook receiver"),
        ):
            await emu.slash_command(user=REQUESTER_ID, command="/sym", text=flow)
            view = await emu.wait_for_view(REQUESTER_ID, contains="Request access")
            await emu.submit_view(view, {"target": target, "field:reason": "audit", "field:duration": "15m"})
            message = await emu.wait_for_message("C0APPROVALS", contains=f"({label})")
            await emu.click(message, user=DEFAULT_APPROVER_ID, text="Approve")
            await emu.wait_for(
                lambda s=system: any(h.system == s for h in box.ledger.holdings.values()), description=system
            )
        emu.verify()
    finally:
        await box.stop()


async def test_with_a_kept_database_the_clock_and_the_receivers_list_survive_a_restart(monkeypatch, tmp_path: Path):
    db = str(tmp_path / "sandbox.db")
    first = await start_sandbox(monkeypatch, SHIPPED_CONFIG, db_path=db)
    try:
        request_id = await request_and_approve(first)
        await first.fast_forward(timedelta(minutes=5))
    finally:
        await first.stop()

    second = await start_sandbox(monkeypatch, SHIPPED_CONFIG, db_path=db)
    try:
        assert second.clock.offset >= timedelta(minutes=5)
        assert list(second.ledger.holdings) == [request_id]  # the bot still counts it as live, and so does the list
        await second.fast_forward(timedelta(minutes=10))
        assert second.ledger.holdings == {}
    finally:
        await second.stop()


async def test_after_a_restart_with_a_kept_database_a_new_request_is_made_though_its_modal_reuses_a_view_id(
    monkeypatch, tmp_path: Path
):
    # A restarted sandbox's local Slack numbers its views from 1 again; a new submission is still new.
    db = str(tmp_path / "sandbox.db")
    first = await start_sandbox(monkeypatch, SHIPPED_CONFIG, db_path=db)
    try:
        before = await request_and_approve(first)
    finally:
        await first.stop()
    second = await start_sandbox(monkeypatch, SHIPPED_CONFIG, db_path=db)
    try:
        await second.fast_forward(timedelta(hours=2))  # the first grant ends: the next is not an extension
        emu = second.emu
        await emu.slash_command(user=REQUESTER_ID, command="/sym")
        view = await emu.wait_for_view(REQUESTER_ID, contains="Request access")
        await emu.submit_view(view, {"target": "prod_readonly", "field:reason": "again", "field:duration": "15m"})
        message = await emu.wait_for_message("C0APPROVALS", contains="again")
        assert before not in message.plain
    finally:
        await second.stop()


async def test_fast_forward_past_the_request_timeout_expires_a_request_nobody_decided(sandbox):
    emu = sandbox.emu
    await emu.slash_command(user=REQUESTER_ID, command="/sym", text="db_access")
    view = await emu.wait_for_view(REQUESTER_ID, contains="Request access")
    await emu.submit_view(view, {"target": "prod_readonly", "field:reason": "later", "field:duration": "1h"})
    await emu.wait_for_message("C0APPROVALS", contains="Waiting for approval")

    await sandbox.fast_forward(timedelta(days=1))  # the shipped flow's request_timeout is 24h

    await emu.wait_for_message("C0APPROVALS", contains="Expired")
    assert sandbox.ledger.holdings == {} and sandbox.ledger.history == []
