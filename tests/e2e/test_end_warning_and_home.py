"""End to end: the warning before access ends (warn_before), the App Home tab, `/sym help` and `/sym list`."""

from __future__ import annotations

from datetime import timedelta

import pytest

from core.models import AccessRequest, AuditEvent, RequestStatus
from tests.e2e.conftest import SECRET_ENV, WEBHOOK_SECRET, Bot, standard_flow
from tests.e2e.flows import APPROVAL_CHANNEL, flows_file
from tests.e2e.harness import command_answer
from tests.e2e.test_after_approval import granted


@pytest.fixture
def start_standard(launch, receiver, monkeypatch):
    """Starts a bot on the standard flow with some of its keys changed; `db_name` keeps one database across starts."""
    monkeypatch.setenv(SECRET_ENV, WEBHOOK_SECRET)

    async def start(clock=None, **keys) -> Bot:
        return Bot(await launch.start(flows_file(standard_flow(receiver.url, **keys)), clock=clock), receiver)

    return start


def warnings_to_alice(bot: Bot) -> list:
    return [m for m in bot.slack.dms_to("U_ALICE") if "Need more time?" in m.plain]


# ── 5. the warning before the end ─────────────────────────────────────────────────────────────────


async def test_the_requester_is_warned_ten_minutes_before_the_end_once_with_an_extend_button(start_standard):
    bot = await start_standard()
    _, request_id = await granted(bot, duration="30m")
    bot.clock.advance(minutes=19, seconds=59)
    await bot.engine.sweep()
    assert warnings_to_alice(bot) == []

    bot.clock.advance(seconds=1)
    await bot.engine.sweep()
    warning = await bot.slack.wait_for_dm("U_ALICE", contains="Need more time?")
    assert [b["text"]["text"] for b in warning.buttons] == ["Extend", "Revoke now"]
    await bot.engine.sweep()
    await bot.engine.warn(request_id)  # a timer firing late as well
    assert len(warnings_to_alice(bot)) == 1
    assert [e.action for e in await bot.running.audit(request_id)].count("access.warned") == 1

    await bot.slack.click(warning, text="Extend", user="U_ALICE")
    view = await bot.slack.wait_for_view("U_ALICE", contains="Extend access")
    assert "field:duration" in {b.get("block_id") for b in view.blocks}


async def test_no_warning_for_a_grant_shorter_than_twice_the_warning_or_with_warn_before_zero(start_standard):
    bot = await start_standard(warn_before="10s")
    _, short = await granted(bot, duration="10s")  # 10s < 2 x 10s
    assert (await bot.engine.requests.get(short)).warn_at is None
    await bot.running.stop()

    quiet = await start_standard(warn_before=0)
    _, request_id = await granted(quiet, duration="1h")
    assert (await quiet.engine.requests.get(request_id)).warn_at is None
    quiet.clock.advance(minutes=59)
    await quiet.engine.sweep()
    assert warnings_to_alice(quiet) == []


async def test_a_warning_due_while_the_bot_was_stopped_is_sent_after_the_restart(start_standard):
    bot = await start_standard()
    _, request_id = await granted(bot, duration="1h")
    await bot.running.stop()
    bot.clock.advance(minutes=55)  # the warning fell due at +50 min, during the outage

    restarted = await start_standard(clock=bot.clock)
    await restarted.slack.wait_for_dm("U_ALICE", contains="Need more time?")
    assert (await restarted.engine.requests.get(request_id)).warn_at is None
    restarted.clock.advance(minutes=5)
    await restarted.engine.sweep()
    assert len(restarted.receiver.accepted("revoke")) == 1
    assert len(warnings_to_alice(restarted)) == 1


async def test_an_extension_moves_the_warning_with_the_end(start_standard):
    bot = await start_standard()
    _, first_id = await granted(bot, duration="30m")
    extension = await bot.engine.extend(first_id, "U_ALICE", 3600)
    await bot.engine.approve(extension.id, "U_BOB")
    moved = await bot.engine.requests.get(extension.id)
    assert moved.warn_at == moved.expires_at - timedelta(minutes=10)
    bot.clock.advance(minutes=25)  # past the first grant's warning time: nothing, it was handed over
    await bot.engine.sweep()
    assert warnings_to_alice(bot) == []


# ── 6. App Home ───────────────────────────────────────────────────────────────────────────────────


async def test_home_shows_my_access_my_pending_requests_and_what_waits_for_my_decision(bot):
    _, live_id = await granted(bot, duration="30m")
    mine = await bot.request(user="U_ALICE", target="Staging read-only")  # pending, Alice's own
    bob_asks = await bot.request(user="U_BOB", target="Staging read-only")  # Alice is not an approver

    await bot.slack.open_home("U_ALICE")
    home = await bot.slack.wait_for_home("U_ALICE", contains="Your access")
    text = home.plain
    assert "Prod Admin" in text and "Staging read-only" in text
    buttons = [(b["block_id"], e["text"]["text"]) for b in home.blocks if b["type"] == "actions" for e in b["elements"]]
    assert (f"home:{live_id}", "Revoke now") in buttons and (f"home:{live_id}", "Extend") in buttons
    assert any(label == "Cancel request" for _, label in buttons)
    assert not any(label == "Approve" for _, label in buttons)  # Bob's request is for secops to decide

    await bot.slack.open_home("U_CAROL")
    carol = await bot.slack.wait_for_home("U_CAROL", contains="Waiting for your decision")
    bob_request = await bot.running.request_for(bob_asks)
    assert any(b.get("block_id") == f"home:{bob_request.id}" for b in carol.blocks)

    # Approve from the Home tab: checked like any click, then Carol's Home is published again.
    await bot.slack.click_in_home("U_CAROL", text="Approve", block_id=f"home:{bob_request.id}")
    await bot.running.idle()
    assert (await bot.engine.requests.get(bob_request.id)).status is RequestStatus.GRANTED
    await bot.slack.wait_for_home("U_CAROL", where=lambda v: f"home:{bob_request.id}" not in str(v.blocks))

    # Cancel request from Alice's Home.
    mine_id = (await bot.running.request_for(mine)).id
    await bot.slack.click_in_home("U_ALICE", text="Cancel request", block_id=f"home:{mine_id}")
    await bot.running.idle()
    assert (await bot.engine.requests.get(mine_id)).status is RequestStatus.CANCELLED
    await bot.slack.wait_for_home("U_ALICE", where=lambda v: f"home:{mine_id}" not in str(v.blocks))

    # Extend from Alice's Home opens the Extend modal.
    await bot.slack.click_in_home("U_ALICE", text="Extend", block_id=f"home:{live_id}")
    await bot.slack.wait_for_view("U_ALICE", contains="Extend access")

    # Revoke now from Alice's Home.
    await bot.slack.click_in_home("U_ALICE", text="Revoke now", block_id=f"home:{live_id}")
    await bot.running.idle()
    assert (await bot.engine.requests.get(live_id)).revoked_by == "U_ALICE"
    await bot.slack.wait_for_home("U_ALICE", where=lambda v: f"home:{live_id}" not in str(v.blocks))


async def test_a_home_tab_with_500_grants_shows_the_newest_within_slacks_limits_and_a_count(bot):
    now = bot.clock.now()
    rows = []
    for i in range(500):
        request = AccessRequest(
            id=f"bulk{i:04d}",
            flow="db_access",
            target="prod_admin",
            requester="U_ALICE",
            created_at=now - timedelta(minutes=500 - i),
            duration_seconds=3600,
            status=RequestStatus.GRANTED,
            approval_channel=APPROVAL_CHANNEL,
            decided_by="U_BOB",
            granted_at=now,
            expires_at=now + timedelta(hours=1),
        )
        rows.append((request, AuditEvent(at=now, actor="test", action="request.created")))
    await bot.engine.requests.create_many(rows)

    await bot.slack.open_home("U_ALICE")
    home = await bot.slack.wait_for_home("U_ALICE", contains="Your access")
    assert len(home.blocks) <= 100  # and the emulator checked every other Block Kit limit
    assert "Showing the 15 newest of 500." in home.plain
    shown = [b["block_id"] for b in home.blocks if b["type"] == "actions"]
    assert shown[0] == "home:bulk0499" and len(shown) == 15


# ── 7. /sym help and /sym list ────────────────────────────────────────────────────────────────────


async def test_sym_help_lists_the_flows_and_the_commands(bot):
    text = await command_answer(bot.slack, "U_ALICE", "help")
    assert "`/sym db_access`: Database Access" in text and "/sym list" in text and "Home" in text
    assert bot.slack.open_views("U_ALICE") == []


async def test_sym_list_shows_only_the_callers_live_grants_and_pending_requests(bot):
    _, live_id = await granted(bot, duration="30m")
    pending = await bot.request(user="U_ALICE", target="Staging read-only")
    pending_id = (await bot.running.request_for(pending)).id
    await bot.request(user="U_BOB", target="Staging read-only")

    text = await command_answer(bot.slack, "U_ALICE", "list")
    assert live_id in text and pending_id in text and "until" in text
    assert text.count("request `") == 2  # Bob's request is not Alice's
    ephemeral = await bot.slack.wait_for_ephemeral("U_ALICE", contains=live_id)
    assert ephemeral.user == "U_ALICE"
