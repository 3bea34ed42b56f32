"""The App Home tab follows what happens to requests without being opened again: the requester's Home
and the Homes of those waiting to decide are published again in the background, only for people who
opened theirs, within Slack's rate limits; a failing views.publish never holds up a decision.
End to end through the Slack emulator over Socket Mode, the webhook receiver as the target system."""

from __future__ import annotations

from core.models import RequestStatus
from tests.e2e.conftest import Bot
from tests.e2e.flows import APPROVAL_CHANNEL


def home_text(bot: Bot, user: str) -> str:
    home = bot.slack.home_of(user)
    return home.plain if home is not None else ""


def published_to(bot: Bot) -> set[str]:
    return {c.args.get("user_id") for c in bot.slack.calls("views.publish")}


async def test_my_open_home_tab_follows_my_request_from_pending_to_granted_to_revoked(bot: Bot):
    await bot.slack.open_home("U_ALICE")
    await bot.slack.wait_for_home("U_ALICE", contains="No pending requests")

    message = await bot.request(duration="30m")
    request = await bot.running.request_for(message)
    await bot.running.idle()
    assert f"home:{request.id}" in str(bot.slack.home_of("U_ALICE").blocks)
    assert "Cancel request" in str(bot.slack.home_of("U_ALICE").blocks)

    await bot.running.approve(message)
    await bot.running.idle()
    home = bot.slack.home_of("U_ALICE")
    assert "No pending requests" in home.plain and "Revoke now" in str(home.blocks)

    bot.clock.advance(minutes=30)
    await bot.engine.sweep()
    await bot.running.idle()
    assert (await bot.engine.requests.get(request.id)).status is RequestStatus.REVOKED
    assert "You hold no access through jitbot" in home_text(bot, "U_ALICE")


async def test_an_approvers_open_home_gains_a_new_request_and_loses_it_once_someone_else_decides(bot: Bot):
    await bot.slack.open_home("U_CAROL")
    await bot.slack.wait_for_home("U_CAROL", contains="Nothing to decide")

    message = await bot.request()
    request = await bot.running.request_for(message)
    await bot.running.idle()
    assert f"home:{request.id}" in str(bot.slack.home_of("U_CAROL").blocks)

    await bot.running.deny(message, "U_BOB", reason="not now")
    await bot.running.idle()
    assert (await bot.engine.requests.get(request.id)).status is RequestStatus.DENIED
    assert "Nothing to decide" in home_text(bot, "U_CAROL")


async def test_an_extension_and_a_cancel_show_on_the_requesters_open_home(bot: Bot):
    message = await bot.request(duration="30m")
    await bot.running.approve(message)
    await bot.slack.open_home("U_ALICE")
    await bot.slack.wait_for_home("U_ALICE", contains="Your access")

    extension = await bot.engine.extend((await bot.running.request_for(message)).id, "U_ALICE", 3600)
    await bot.running.idle()
    assert f"home:{extension.id}" in str(bot.slack.home_of("U_ALICE").blocks)

    await bot.engine.cancel(extension.id, "U_ALICE")
    await bot.running.idle()
    assert f"home:{extension.id}" not in str(bot.slack.home_of("U_ALICE").blocks)


async def test_nobody_who_never_opened_their_home_tab_gets_one_published(bot: Bot):
    await bot.slack.open_home("U_CAROL")
    message = await bot.request()
    await bot.running.approve(message, "U_BOB")
    await bot.running.idle()
    assert published_to(bot) == {"U_CAROL"}  # not Alice (requester) nor Bob (approver): they never opened it


async def test_a_failing_home_publish_never_holds_up_a_decision_and_is_only_logged(bot: Bot):
    await bot.slack.open_home("U_ALICE")
    await bot.slack.open_home("U_CAROL")
    await bot.slack.wait_for_home("U_CAROL", contains="Nothing to decide")
    bot.slack.fail("views.publish", "internal_error", times=None)

    message = await bot.request()
    granted = await bot.running.approve(message, "U_BOB")
    await bot.running.idle()
    assert "granted until" in granted.plain
    assert (await bot.running.request_for(message)).status is RequestStatus.GRANTED
    assert len(bot.receiver.accepted("grant")) == 1
    assert bot.slack.ephemerals_to("U_BOB") == [] and bot.slack.ephemerals_to("U_ALICE") == []
    assert [c for c in bot.slack.calls("views.publish") if not c.ok]  # it was tried, and failed quietly
    assert not [m for m in bot.slack.messages_in("C_ALERTS") if "Home" in m.plain]


async def test_homes_under_slacks_rate_limit_are_published_after_retry_after_and_all_end_current(bot: Bot):
    approvers = ["U_BOB", "U_CAROL"]
    for user in ["U_ALICE", *approvers]:
        await bot.slack.open_home(user)
        await bot.slack.wait_for_home(user, contains="Ask for access")
    bot.slack.throttle("views.publish", limit=2, per=1.0)

    message = await bot.request()
    request = await bot.running.request_for(message)
    await bot.running.approve(message, "U_BOB")
    await bot.running.idle(timeout=30)

    assert "Revoke now" in str(bot.slack.home_of("U_ALICE").blocks)
    for user in approvers:
        assert f"home:{request.id}" not in str(bot.slack.home_of(user).blocks)
    calls = [(c.args.get("user_id"), c.status) for c in bot.slack.calls("views.publish")]
    refused = [i for i, (_, status) in enumerate(calls) if status == 429]
    assert refused, calls  # Slack did say "too many"
    # Each 429 was waited out (Retry-After) and the same Home tried again, with nothing in between.
    assert all(calls[i + 1] == (calls[i][0], 200) for i in refused), calls
    assert bot.slack.messages_in(APPROVAL_CHANNEL)[0].ts == message.ts
