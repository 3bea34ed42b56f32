"""The life of access after approval, end to end through the Slack emulator over Socket Mode:
Revoke now, Cancel request, Extend (and a request for held access), the warning before the end,
the App Home tab, and `/sym help` / `/sym list`. The webhook receiver is the target system.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

from core.errors import InvalidInput, NotAllowed
from core.models import MessageRef, RequestStatus
from sandbox.slack import Message
from tests.e2e.conftest import SECRET_ENV, WEBHOOK_SECRET, Bot, standard_flow
from tests.e2e.flows import APPROVAL_CHANNEL, flows_file


@pytest.fixture
def start_standard(launch, receiver, monkeypatch):
    """Starts a bot on the standard flow with some of its keys changed (`max_total_duration="1h"`…)."""
    monkeypatch.setenv(SECRET_ENV, WEBHOOK_SECRET)

    async def start(**keys) -> Bot:
        return Bot(await launch.start(flows_file(standard_flow(receiver.url, **keys))), receiver)

    return start


async def granted(bot: Bot, duration: str = "30m") -> tuple[Message, str]:
    """Alice asks for Prod Admin, Bob approves: (the channel message, the request id)."""
    message = await bot.request(duration=duration)
    await bot.running.approve(message)
    await bot.running.idle()
    return message, (await bot.running.request_for(message)).id


async def dm_with(bot: Bot, button: str, contains: str | None = None) -> Message:
    """The latest DM to Alice that carries `button`."""
    return await bot.slack.wait_for(
        lambda: next(
            (
                m
                for m in reversed(bot.slack.dms_to("U_ALICE"))
                if any(b["text"]["text"] == button for b in m.buttons) and (contains is None or contains in m.plain)
            ),
            None,
        ),
        description=f"a DM to Alice with {button}",
    )


async def actions_of(bot: Bot, request_id: str) -> list[str]:
    return [e.action for e in await bot.running.audit(request_id)]


# ── 1. Revoke now ─────────────────────────────────────────────────────────────────────────────────


async def test_the_requester_ends_access_early_from_the_dm_and_the_message_dm_and_audit_say_so(bot):
    message, request_id = await granted(bot)
    dm = await dm_with(bot, "Revoke now", "is granted")
    assert {b["text"]["text"] for b in dm.buttons} == {"Revoke now", "Extend"}

    bot.clock.advance(minutes=5)
    await bot.slack.click(dm, text="Revoke now", user="U_ALICE")
    await bot.running.idle()

    (revoke,) = bot.receiver.accepted("revoke")
    assert revoke.body["request_id"] == request_id and not bot.receiver.is_held(request_id)
    request = await bot.engine.requests.get(request_id)
    assert request.status is RequestStatus.REVOKED and request.revoked_by == "U_ALICE"
    assert request.end_reason == "ended early by @Alice Requester" and request.ended_at == bot.clock.now()
    ended = bot.slack.message(APPROVAL_CHANNEL, message.ts)
    assert "early, by <@U_ALICE>" in ended.plain and not ended.buttons
    edited = bot.slack.message("U_ALICE", dm.ts)
    assert not edited.buttons and "ended early" in edited.plain
    await bot.slack.wait_for_dm("U_ALICE", contains="was ended early by <@U_ALICE>")
    trail = await bot.running.audit(request_id)
    asked = next(e for e in trail if e.action == "access.revoke_requested")
    assert asked.actor == "U_ALICE" and asked.detail["reason"] == "ended early by @Alice Requester"
    assert trail[-1].action == "access.revoked" and trail[-1].detail["revoked_by"] == "U_ALICE"

    # The timer that was due at the original end finds nothing to do.
    bot.clock.advance(minutes=30)
    await bot.engine.sweep()
    assert len(bot.receiver.accepted("revoke")) == 1


async def test_an_approver_may_end_access_from_the_channel_message_and_anyone_else_is_refused_and_audited(bot):
    message, request_id = await granted(bot)
    bot.slack.add_user("U_DAVE", email="dave@example.com", name="dave")

    await bot.slack.click(bot.slack.message(APPROVAL_CHANNEL, message.ts), text="Revoke now", user="U_DAVE")
    await bot.slack.wait_for_ephemeral("U_DAVE", contains="approver of its flow can end it")
    assert bot.receiver.accepted("revoke") == []
    refused = [e for e in await bot.running.audit(request_id) if e.action == "click.refused"]
    assert refused[-1].actor == "U_DAVE" and refused[-1].detail["action"] == "revoke_now"

    await bot.slack.click(bot.slack.message(APPROVAL_CHANNEL, message.ts), text="Revoke now", user="U_CAROL")
    await bot.running.idle()
    assert len(bot.receiver.accepted("revoke")) == 1
    assert (await bot.engine.requests.get(request_id)).revoked_by == "U_CAROL"


async def test_a_double_click_and_a_redelivered_envelope_revoke_once(bot):
    _, request_id = await granted(bot)
    dm = await dm_with(bot, "Revoke now", "is granted")
    first = await bot.slack.click(dm, text="Revoke now", user="U_ALICE")
    await bot.running.idle()
    await bot.slack.redeliver(first)
    await bot.running.idle()
    await bot.slack.wait_for_ephemeral("U_ALICE", contains="already ended")
    assert len(bot.receiver.accepted("revoke")) == 1
    assert (await actions_of(bot, request_id)).count("access.revoked") == 1


async def test_revoke_now_racing_the_scheduled_revocation_calls_the_strategy_once(bot):
    _, request_id = await granted(bot, duration="30m")
    bot.clock.advance(minutes=30)  # the end is due right now
    outcomes = await asyncio.gather(
        bot.engine.revoke_now(request_id, "U_ALICE"), bot.engine.revoke(request_id), return_exceptions=True
    )
    assert len(bot.receiver.accepted("revoke")) == 1
    assert (await bot.engine.requests.get(request_id)).status is RequestStatus.REVOKED
    # Whichever came second found it ended: changed nothing, or was told so.
    assert all(o is None or isinstance(o, (NotAllowed,)) or o.status is RequestStatus.REVOKED for o in outcomes)


async def test_a_failing_early_revoke_is_retried_with_backoff_and_alerted_like_any_revocation(bot):
    _, request_id = await granted(bot)
    bot.receiver.fail_next(1, status=503, action="revoke")
    await bot.engine.revoke_now(request_id, "U_BOB")
    await bot.slack.wait_for_message("C_ALERTS", contains="Revocation failed (attempt 1)")
    ending = await bot.engine.requests.get(request_id)
    assert ending.status is RequestStatus.GRANTED and ending.revoked_by == "U_BOB"
    assert "Being ended early" in bot.slack.message(APPROVAL_CHANNEL, ending.message_ts).plain
    with pytest.raises(NotAllowed, match="already being ended"):
        await bot.engine.revoke_now(request_id, "U_ALICE")  # no second strategy call from a second click

    bot.clock.advance(seconds=2)
    await bot.engine.sweep()
    assert (await bot.engine.requests.get(request_id)).status is RequestStatus.REVOKED
    assert len(bot.receiver.accepted("revoke")) == 1


# ── 2. Cancel request ─────────────────────────────────────────────────────────────────────────────


async def test_the_requester_cancels_from_the_dm_and_approvers_see_it(bot):
    message = await bot.request()
    dm = await dm_with(bot, "Cancel request", "sent to")
    await bot.slack.click(dm, text="Cancel request", user="U_ALICE")
    await bot.running.idle()
    request = await bot.running.request_for(message)
    assert request.status is RequestStatus.CANCELLED and request.decided_by == "U_ALICE"
    shown = bot.slack.message(APPROVAL_CHANNEL, message.ts)
    assert "Cancelled by the requester" in shown.plain and not shown.buttons
    assert not bot.slack.message("U_ALICE", dm.ts).buttons
    await bot.slack.wait_for_dm("U_ALICE", contains="You cancelled your request")
    # A stale Approve (from a client that still shows the button) changes nothing.
    with pytest.raises(NotAllowed, match="already cancelled"):
        await bot.engine.approve(request.id, "U_BOB")
    assert bot.receiver.accepted() == []


async def test_the_requesters_own_deny_click_cancels_and_nobody_else_can_cancel(bot):
    message = await bot.request()
    request = await bot.running.request_for(message)
    with pytest.raises(NotAllowed, match="Only the person who asked"):
        await bot.engine.cancel(request.id, "U_BOB")
    await bot.slack.click(message, text="Deny", user="U_ALICE")
    await bot.running.idle()
    request = await bot.engine.requests.get(request.id)
    assert request.status is RequestStatus.CANCELLED
    assert "request.cancelled" in await actions_of(bot, request.id)


# ── 3. Extend, and 4. a request for held access ───────────────────────────────────────────────────


async def extend_from_dm(bot: Bot, duration: str = "1h", user: str = "U_ALICE") -> Message:
    """Alice presses Extend on her granted DM, picks `duration`, submits; returns the extension's message."""
    dm = await dm_with(bot, "Extend")
    before = {m.ts for m in bot.slack.messages_in(APPROVAL_CHANNEL)}
    await bot.slack.click(dm, text="Extend", user=user)
    view = await bot.slack.wait_for_view(user, contains="Extend access")
    result = await bot.slack.submit_view(view, {"field:duration": duration})
    assert result.response_action is None, result.ack_payload
    await bot.running.idle()
    return await bot.slack.wait_for(
        lambda: next((m for m in bot.slack.messages_in(APPROVAL_CHANNEL) if m.ts not in before), None),
        description="the extension's message",
    )


async def test_extend_approved_before_the_end_moves_it_with_no_revoke_and_no_second_grant(bot):
    message, first_id = await granted(bot, duration="30m")
    first = await bot.engine.requests.get(first_id)
    bot.clock.advance(minutes=29, seconds=59)  # one second before the end

    extension = await extend_from_dm(bot, "1h")
    assert "Extends request" in extension.plain and "+1h" in extension.plain
    ext = await bot.running.request_for(extension)
    assert ext.extends == first_id and ext.status is RequestStatus.PENDING
    await bot.running.approve(extension, "U_CAROL")

    assert len(bot.receiver.accepted("grant")) == 1 and bot.receiver.accepted("revoke") == []
    assert bot.receiver.is_held(first_id)  # the target never lost the member
    ext = await bot.engine.requests.get(ext.id)
    assert ext.status is RequestStatus.GRANTED and ext.expires_at == first.expires_at + timedelta(hours=1)
    handed = await bot.engine.requests.get(first_id)
    assert handed.status is RequestStatus.REVOKED and handed.end_reason == f"extended by request {ext.id}"
    assert "Access continues" in bot.slack.message(APPROVAL_CHANNEL, message.ts).plain
    await bot.slack.wait_for_dm("U_ALICE", contains="is extended")

    bot.clock.advance(seconds=1)  # the first grant's own end
    await bot.engine.sweep()
    assert bot.receiver.accepted("revoke") == [] and bot.receiver.is_held(first_id)

    bot.clock.advance(hours=1)
    await bot.engine.sweep()
    (revoke,) = bot.receiver.accepted("revoke")
    assert revoke.body["request_id"] == first_id  # the grant the receiver knows, revoked once at the new end
    assert not bot.receiver.is_held(first_id)
    assert (await bot.engine.requests.get(ext.id)).status is RequestStatus.REVOKED


async def test_extend_approved_after_the_end_is_an_ordinary_grant(bot):
    _, first_id = await granted(bot, duration="30m")
    extension = await extend_from_dm(bot, "30m")
    bot.clock.advance(minutes=30)
    await bot.engine.sweep()  # the first grant ends on time
    assert [d.body["request_id"] for d in bot.receiver.accepted("revoke")] == [first_id]

    await bot.running.approve(extension)
    ext = await bot.running.request_for(extension)
    assert len(bot.receiver.accepted("grant")) == 2 and bot.receiver.is_held(ext.id)
    assert ext.expires_at == bot.clock.now() + timedelta(minutes=30)


async def test_a_restart_between_the_extension_request_and_its_approval_still_moves_the_end(
    start_webhook_bot, receiver
):
    running = await start_webhook_bot()
    bot = Bot(running, receiver)
    _, first_id = await granted(bot, duration="30m")
    extension = await extend_from_dm(bot, "1h")
    await running.stop()

    restarted = Bot(await start_webhook_bot(clock=running.clock), receiver)
    await restarted.running.approve(restarted.slack.message(APPROVAL_CHANNEL, extension.ts))
    assert len(receiver.accepted("grant")) == 1 and receiver.accepted("revoke") == []
    restarted.clock.advance(minutes=31)
    await restarted.engine.sweep()
    assert receiver.is_held(first_id) and receiver.accepted("revoke") == []


async def test_a_request_for_held_access_from_the_command_is_an_extension_request(bot):
    _, first_id = await granted(bot, duration="30m")
    again = await bot.request(duration="1h")
    assert "Extends request" in again.plain
    assert (await bot.running.request_for(again)).extends == first_id


async def test_max_total_duration_is_checked_in_the_extend_modal(start_standard):
    bot = await start_standard(max_total_duration="1h")
    _, request_id = await granted(bot, duration="30m")
    dm = await dm_with(bot, "Extend")
    await bot.slack.click(dm, text="Extend", user="U_ALICE")
    view = await bot.slack.wait_for_view("U_ALICE", contains="Extend access")
    assert "At most 30m more" in view.plain
    options = next(b for b in view.blocks if b.get("block_id") == "field:duration")["element"]["options"]
    assert [o["value"] for o in options] == ["10s", "30m"]  # 1h would pass the cap

    # Beyond the cap (a crafted payload, or the API): a clear error, nothing stored.
    before = len(await bot.running.all_requests())
    with pytest.raises(InvalidInput, match="at most 1h"):
        await bot.engine.extend(request_id, "U_ALICE", 3600)
    refused = await bot.slack.submit_view(view, {"field:duration": "30m"})  # fits: accepted
    assert refused.response_action is None
    await bot.running.idle()
    assert len(await bot.running.all_requests()) == before + 1


async def test_an_extend_submission_beyond_the_cap_is_answered_in_the_modal(start_standard):
    bot = await start_standard(max_total_duration="1h")
    await granted(bot, duration="30m")
    dm = await dm_with(bot, "Extend")
    await bot.slack.click(dm, text="Extend", user="U_ALICE")
    view = await bot.slack.wait_for_view("U_ALICE", contains="Extend access")
    bot.clock.advance(seconds=1)
    # The modal offered 30m; meanwhile another extension took the rest of the cap.
    extension = await bot.engine.extend(
        (await bot.engine.requests.list_by_status(RequestStatus.GRANTED))[0].id, "U_ALICE", 1800
    )
    await bot.engine.approve(extension.id, "U_BOB")
    answer = await bot.slack.submit_view(view, {"field:duration": "10s"})
    assert answer.response_action == "errors" and "at most 1h" in answer.ack_payload["errors"]["field:duration"]


async def test_hooks_see_evt_extends(launch, start_standard):
    launch.write(
        "hooks.py",
        """
        SEEN = []

        async def on_request(evt):
            SEEN.append(evt.extends)
        """,
    )
    bot = await start_standard(hooks="hooks.py")
    running = bot.running
    _, first_id = await granted(bot, duration="30m")
    await extend_from_dm(bot, "1h")
    assert running.hook_module("db_access").SEEN == [None, first_id]


async def test_revoke_now_from_a_message_other_than_the_requests_own_is_refused(bot):
    _, request_id = await granted(bot)
    with pytest.raises(NotAllowed, match="does not belong"):
        await bot.engine.revoke_now(request_id, "U_BOB", source=MessageRef("C_ALERTS", "1.000001"))
    assert bot.receiver.accepted("revoke") == []


async def test_the_cap_is_checked_again_at_the_approval_and_a_refusal_is_audited(start_standard):
    bot = await start_standard(max_total_duration="1h")
    _, first_id = await granted(bot, duration="30m")
    one = await bot.engine.extend(first_id, "U_ALICE", 1800)
    two = await bot.engine.extend(first_id, "U_ALICE", 1800)  # each fits on its own: 30m + 30m
    await bot.engine.approve(one.id, "U_BOB")
    with pytest.raises(NotAllowed, match="at most 1h"):
        await bot.engine.approve(two.id, "U_BOB")  # 30m + 30m + 30m would not
    assert (await bot.engine.requests.get(two.id)).status is RequestStatus.PENDING
    refused = [e for e in await bot.running.audit(two.id) if e.action == "click.refused"]
    assert refused and "at most 1h" in refused[-1].detail["reason"]
    assert len(bot.receiver.accepted("grant")) == 1


async def test_revoke_now_on_the_first_grants_dm_after_an_extension_ends_the_access_where_it_is_held(bot):
    _, first_id = await granted(bot, duration="30m")
    first_dm = await dm_with(bot, "Revoke now", "is granted")
    extension = await extend_from_dm(bot, "1h")
    await bot.running.approve(extension)
    ext_id = (await bot.running.request_for(extension)).id

    await bot.slack.click(first_dm, text="Revoke now", user="U_ALICE")
    await bot.running.idle()
    (revoke,) = bot.receiver.accepted("revoke")
    assert revoke.body["request_id"] == first_id and not bot.receiver.is_held(first_id)
    ended = await bot.engine.requests.get(ext_id)
    assert ended.status is RequestStatus.REVOKED and ended.revoked_by == "U_ALICE"
