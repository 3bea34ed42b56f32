"""A modal submission Slack delivers more than once (a late ack makes Slack send the envelope again,
marked with `retry_attempt` / `retry_reason`) is one submission: one request, one extension request,
one denial. End to end through the Slack emulator over Socket Mode, the webhook receiver as target.
"""

from __future__ import annotations

import asyncio

from core.models import RequestStatus
from tests.e2e.conftest import Bot
from tests.e2e.flows import APPROVAL_CHANNEL
from tests.e2e.harness import submit_request
from tests.e2e.test_after_approval import dm_with, granted


async def test_a_redelivered_request_form_makes_one_request(bot: Bot):
    first = await submit_request(bot.slack, "U_ALICE", "db_access", target="Prod Admin")
    assert first.response_action is None
    await bot.running.idle()
    again = await bot.slack.redeliver(first, retry_attempt=1, retry_reason="timeout")
    assert again.acked and again.response_action is None  # acked quietly: Slack stops retrying
    await bot.running.idle()

    (request,) = await bot.running.all_requests()
    assert request.status is RequestStatus.PENDING
    assert len(bot.slack.messages_in(APPROVAL_CHANNEL)) == 1
    assert [e.action for e in await bot.running.audit(request.id)].count("request.created") == 1


async def test_retries_that_arrive_while_the_first_delivery_is_still_running_make_one_request(bot: Bot):
    first = await submit_request(bot.slack, "U_ALICE", "db_access", target="Prod Admin")
    # The first delivery's submit is still running when the two retries arrive together.
    await asyncio.gather(
        bot.slack.redeliver(first, retry_attempt=1, retry_reason="timeout"),
        bot.slack.redeliver(first, retry_attempt=2, retry_reason="timeout"),
    )
    await bot.running.idle()

    assert len(await bot.running.all_requests()) == 1
    assert len(bot.slack.messages_in(APPROVAL_CHANNEL)) == 1


async def test_a_redelivered_extend_submission_makes_one_extension_request(bot: Bot):
    _, first_id = await granted(bot, duration="30m")
    dm = await dm_with(bot, "Extend")
    await bot.slack.click(dm, text="Extend", user="U_ALICE")
    view = await bot.slack.wait_for_view("U_ALICE", contains="Extend access")
    submitted = await bot.slack.submit_view(view, {"field:duration": "1h"})
    assert submitted.response_action is None
    await asyncio.gather(
        bot.slack.redeliver(submitted, retry_attempt=1, retry_reason="timeout"),
        bot.slack.redeliver(submitted, retry_attempt=2, retry_reason="timeout"),
    )
    await bot.running.idle()

    extensions = [r for r in await bot.running.all_requests() if r.extends == first_id]
    assert len(extensions) == 1 and extensions[0].status is RequestStatus.PENDING
    assert len([m for m in bot.slack.messages_in(APPROVAL_CHANNEL) if "Extends request" in m.plain]) == 1
    assert bot.slack.ephemerals_to("U_ALICE") == []  # a retry is not an error to show anyone


async def test_two_extend_modals_submitted_are_two_extension_requests(bot: Bot):
    # What makes a submission one is its modal: pressing Extend twice and submitting both is two asks.
    _, first_id = await granted(bot, duration="30m")
    for _ in range(2):
        dm = await dm_with(bot, "Extend")
        await bot.slack.click(dm, text="Extend", user="U_ALICE")
        view = await bot.slack.wait_for(
            lambda: next((v for v in bot.slack.open_views("U_ALICE") if "Extend access" in v.plain), None),
            description="an open Extend modal",
        )
        assert (await bot.slack.submit_view(view, {"field:duration": "10s"})).response_action is None
        await bot.running.idle()
    assert len([r for r in await bot.running.all_requests() if r.extends == first_id]) == 2


async def test_a_redelivered_deny_reason_denies_once(bot: Bot):
    message = await bot.request()
    await bot.slack.click(message, text="Deny", user="U_CAROL")
    view = await bot.slack.wait_for_view("U_CAROL", contains="Deny request")
    submitted = await bot.slack.submit_view(view, {"deny-reason": "not during the freeze"})
    await bot.running.idle()
    await bot.slack.redeliver(submitted, retry_attempt=1, retry_reason="timeout")
    await bot.running.idle()

    request = await bot.running.request_for(message)
    assert request.status is RequestStatus.DENIED and request.decision_reason == "not during the freeze"
    actions = [e.action for e in await bot.running.audit(request.id)]
    assert actions.count("request.denied") == 1
    assert bot.slack.ephemerals_to("U_CAROL") == []  # the retry of her own denial is no refusal


# ── a redelivered click or command that opens a modal ─────────────────────────────────────────────


async def test_a_redelivered_extend_click_leaves_the_one_modal_open_and_shows_no_error(bot: Bot):
    await granted(bot, duration="30m")
    dm = await dm_with(bot, "Extend")
    first = await bot.slack.click(dm, text="Extend", user="U_ALICE")
    view = await bot.slack.wait_for_view("U_ALICE", contains="Extend access")
    await bot.slack.redeliver(first, retry_attempt=1, retry_reason="timeout")
    await bot.running.idle()
    assert bot.slack.ephemerals_to("U_ALICE") == [] and not bot.slack.dms_to("U_ALICE")[-1].plain.startswith(
        ":warning:"
    )
    assert [v.id for v in bot.slack.open_views("U_ALICE")] == [view.id]


async def test_a_redelivered_deny_click_leaves_the_one_reason_modal_open_and_shows_no_error(bot: Bot):
    message = await bot.request()
    first = await bot.slack.click(message, text="Deny", user="U_CAROL")
    view = await bot.slack.wait_for_view("U_CAROL", contains="Deny request")
    await bot.slack.redeliver(first, retry_attempt=1, retry_reason="timeout")
    await bot.running.idle()
    assert bot.slack.ephemerals_to("U_CAROL") == []
    assert [v.id for v in bot.slack.open_views("U_CAROL")] == [view.id]


async def test_a_redelivered_sym_command_leaves_the_one_form_open_and_shows_no_error(bot: Bot):
    first = await bot.slack.slash_command(user="U_ALICE", command="/sym", text="db_access")
    view = await bot.slack.wait_for_view("U_ALICE", contains="Request access")
    await bot.slack.redeliver(first, retry_attempt=1, retry_reason="timeout")
    await bot.running.idle()
    assert bot.slack.ephemerals_to("U_ALICE") == []
    assert [v.id for v in bot.slack.open_views("U_ALICE")] == [view.id]
