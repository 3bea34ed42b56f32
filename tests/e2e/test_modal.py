import socket

import aiohttp
import pytest

from tests.e2e.flows import duration_field, flow, target, webhook_strategy
from tests.e2e.harness import command_answer


@pytest.fixture
async def two_flow_bot(receiver, start_webhook_bot):
    """The standard bot with a second flow, so /sym opens the picker."""
    staging_shell = flow(
        "staging_shell",
        "Staging Shell",
        webhook_strategy(receiver.url, target("shell", "Staging shell")),
        [duration_field(label="How long", max="2h")],
    )
    return await start_webhook_bot(staging_shell)


async def test_several_flows_open_a_picker_and_choosing_one_updates_the_modal_to_its_form(slack, two_flow_bot):
    await slack.slash_command(user="U_ALICE", command="/sym")
    picker = await slack.wait_for_view("U_ALICE", contains="What do you need access to?")
    await slack.select_in_view(picker, "flow-pick", "staging_shell", user="U_ALICE")
    # The picker lists "Staging Shell" too: wait for the form itself.
    form = await slack.wait_for_view("U_ALICE", where=lambda v: v.callback_id == "request-form")
    assert form.id == picker.id and "Staging Shell" in form.plain

    result = await slack.submit_view(form, {"target": "shell", "field:duration": "3h"}, user="U_ALICE")
    assert result.response_action == "errors" and result.errors == {"field:duration": "At most 2h."}
    assert slack.messages_in("C_APPROVALS") == []

    result = await slack.submit_view(form, {"target": "shell", "field:duration": "90m"}, user="U_ALICE")
    assert result.response_action is None
    posted = await slack.wait_for_message("C_APPROVALS", contains="Staging shell")
    assert "1h30m" in posted.plain or "90m" in posted.plain


async def test_sym_with_a_flow_name_opens_that_form_and_an_unknown_name_is_answered_ephemerally(slack, two_flow_bot):
    await slack.slash_command(user="U_ALICE", command="/sym", text="staging_shell")
    await slack.wait_for_view("U_ALICE", contains="Staging Shell")

    answer = await command_answer(slack, "U_ALICE", "nope")
    assert "no flow named `nope`" in answer and "`db_access`" in answer


async def test_the_health_endpoint_reports_slack_and_database(start_webhook_bot):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    await start_webhook_bot(health_address=f"127.0.0.1:{port}")
    async with aiohttp.ClientSession() as http:
        async with http.get(f"http://127.0.0.1:{port}/health") as response:
            assert response.status == 200
            assert await response.json() == {"status": "ok", "slack": True, "database": True}


async def test_a_redelivered_flow_pick_keeps_the_form_it_chose_and_shows_no_error(slack, two_flow_bot):
    await slack.slash_command(user="U_ALICE", command="/sym")
    picker = await slack.wait_for_view("U_ALICE", contains="What do you need access to?")
    first = await slack.select_in_view(picker, "flow-pick", "staging_shell", user="U_ALICE")
    await slack.wait_for_view("U_ALICE", contains="Staging Shell")
    await slack.redeliver(first, retry_attempt=1, retry_reason="timeout")
    await two_flow_bot.idle()
    assert slack.ephemerals_to("U_ALICE") == []
    assert not [m for m in slack.dms_to("U_ALICE") if "went wrong" in m.plain]
    (form,) = slack.open_views("U_ALICE")
    assert "Staging Shell" in form.plain
