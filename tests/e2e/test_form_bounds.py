"""A request form with out-of-range values is answered with inline errors at once, never left unanswered."""

import pytest

from sandbox.slack.errors import EmulatorUsageError
from tests.e2e.flows import duration_field, flow, target, webhook_strategy
from tests.e2e.harness import command_answer


@pytest.fixture
async def bounded_bot(receiver, start_webhook_bot):
    """The standard bot plus a flow with a typed duration (at most 2h) and a count."""
    staging_shell = flow(
        "staging_shell",
        "Staging Shell",
        webhook_strategy(receiver.url, target("shell", "Staging shell")),
        [{"name": "count", "label": "How many sessions", "type": "int"}, duration_field(label="How long", max="2h")],
    )
    return await start_webhook_bot(staging_shell)


async def open_form(slack):
    await slack.slash_command(user="U_ALICE", command="/sym", text="staging_shell")
    return await slack.wait_for_view("U_ALICE", contains="Staging Shell")


async def test_a_duration_too_large_for_any_clock_is_an_inline_error_and_nothing_is_posted(slack, bounded_bot):
    form = await open_form(slack)
    result = await slack.submit_view(form, {"target": "shell", "field:duration": "99999999999d"}, user="U_ALICE")
    assert result.response_action == "errors" and result.errors == {"field:duration": "At most 2h."}
    assert slack.messages_in("C_APPROVALS") == []

    # The same modal, corrected, still goes through.
    result = await slack.submit_view(form, {"target": "shell", "field:duration": "1h"}, user="U_ALICE")
    assert result.response_action is None
    await slack.wait_for_message("C_APPROVALS", contains="Staging shell")


async def test_a_number_with_more_than_15_digits_cannot_be_submitted_and_the_parser_bounds_it_too(slack, bounded_bot):
    form = await open_form(slack)
    # The modal carries the parser's bounds, so Slack itself refuses the value (the parser's own
    # check, for a tampered payload, is in tests/handlers/test_blocks_and_forms.py).
    with pytest.raises(EmulatorUsageError, match="max_value=999999999999999"):
        await slack.submit_view(
            form, {"target": "shell", "field:count": "99999999999999999999", "field:duration": "30m"}, user="U_ALICE"
        )
    assert slack.messages_in("C_APPROVALS") == []


async def test_an_unknown_flow_name_of_any_length_is_answered_with_a_short_message(slack, bounded_bot):
    text = await command_answer(slack, "U_ALICE", "x" * 3900)
    assert text.startswith("There is no flow named") and len(text) < 300, text
    assert "`db_access`" in text and "`staging_shell`" in text


async def test_a_refused_form_delivered_again_is_refused_again_and_its_correction_still_makes_one_request(
    slack, bounded_bot
):
    form = await open_form(slack)
    refused = await slack.submit_view(form, {"target": "shell", "field:duration": "3h"}, user="U_ALICE")
    assert refused.response_action == "errors"
    again = await slack.redeliver(refused, retry_attempt=1, retry_reason="timeout")
    assert again.response_action == "errors" and again.errors == refused.errors  # no request behind it
    await bounded_bot.idle()
    assert slack.messages_in("C_APPROVALS") == []

    corrected = await slack.submit_view(form, {"target": "shell", "field:duration": "1h"}, user="U_ALICE")
    assert corrected.response_action is None
    await slack.wait_for_message("C_APPROVALS", contains="Staging shell")
    await slack.redeliver(corrected, retry_attempt=1, retry_reason="timeout")
    await slack.redeliver(refused, retry_attempt=2, retry_reason="timeout")  # late, after its correction
    await bounded_bot.idle()
    assert len(await bounded_bot.all_requests()) == 1
    assert len([m for m in slack.messages_in("C_APPROVALS") if "Staging shell" in m.plain]) == 1
