"""A local Slack for tests: Web API at `/api/{method}` plus Socket Mode, on 127.0.0.1 (port 0).

The bot reaches it exactly as it reaches Slack, through `SLACK_API_URL = emu.api_url`; the emulator
keeps messages, views and calls, acts as people would, and refuses what real Slack refuses.

    async def test_request_flow(slack):               # the fixture in tests/conftest.py
        app = AsyncApp(client=AsyncWebClient(token=slack.bot_token, base_url=slack.api_url))
        ...register listeners, then start AsyncSocketModeHandler(app, slack.app_token)...
        await slack.wait_connected()
        cmd = await slack.slash_command(user="U_ALICE", command="/sym", text="prod")
        view = await slack.wait_for_view("U_ALICE", contains="Request access")
        await slack.submit_view(view, {"target": "prod-db", "reason": "incident 42"})
        request = await slack.wait_for_message("C_APPROVALS", contains="prod-db")
        await slack.click(request, text="Approve", user="U_BOB")
        await slack.wait_for_message("C_APPROVALS", contains="Approved by", where=lambda m: m.edited)
        assert "granted" in (await slack.wait_for_dm("U_ALICE", contains="granted")).plain

Close the bot's handler (`await handler.close_async()`, then await its tasks) in a fixture that
depends on `slack`, so it stops before the emulator does; tests/emulator/helpers.py:BoltBot does this.

People (async; each returns an EnvelopeResult: .envelope, .payload, .ack_payload, .latency, .view, .errors):
    slash_command(user=, command="/sym", text="", channel=None)     channel defaults to the user's DM;
                                                                     issues a single-use trigger_id (3 s)
    submit_view(view_or_id, values={block_id|action_id: value}, user=None)
                 values: str for text inputs, number for number_input, option value or label for selects,
                 lists for multi-selects/checkboxes, date/time/datetime for pickers; others keep their value
    select_in_view(view_or_id, action_id, value, user=None)         block_actions from a modal (dispatch)
    click(channel_or_message, ts=None, user=, text=|action_id=)     a button on a stored message
    open_home(user) (app_home_opened), click_in_home(user, text=|action_id=, block_id=), home_of(user),
    wait_for_home(user, contains=) (the Home tab the bot published with views.publish)
    click_in_view(view_or_id, text=|action_id=), close_view(view_or_id, user=None) -> None unless
                 notify_on_close; redeliver(result, retry_attempt=1, retry_reason="timeout");
    send_event(event), send_envelope(type, payload), issue_trigger(user) (for hand-built payloads)
Socket Mode: wait_connected(n=1), disconnect(reason="refresh_requested"), drop_connections(abort=False),
    connection_count, connects, ack_timeout (attribute, seconds). Up to 10 connections at once (several
    replicas); each envelope goes to any one (SlackEmulator(seed=) makes the choice reproducible); an
    envelope whose connection closes unacked raises DeliveryLost (an AckTimeout) at once.
Directory: SlackEmulator(users=, channels=, usergroups=) or add_user(id, email=, name=, real_name=,
    is_bot=, deleted=, guest='multi'|'single'|'external', team_id=),
    add_channel(id, name=, members=None, bot_is_member=True), add_usergroup(id, users=).
Queries: messages_in(ch), message(ch, ts), dms_to(u), ephemerals_to(u), calls(method) -> [Call(args,
    headers, time, status, response)], open_views(u), latest_view(u), view(id), envelopes, ack_latencies.
Waits (woken by state changes, no polling): wait_for(fn, timeout=5), wait_for_message(ch, contains=,
    where=), wait_for_dm(u, contains=), wait_for_ephemeral(u, ...), wait_for_view(u, ...),
    wait_for_call(method, count=1), next_message(ch=None).
Faults: fail(method, error="internal_error", times=1), rate_limit(method, times=1, retry_after=1),
    throttle(method, tier=3 | limit=N, per=60.0) (Slack's per-method limit: 429 + Retry-After beyond it),
    delay(method, seconds, times=None), clear_faults(method=None).
Strictness: an unacked envelope (AckTimeout), a payload Slack rejects (invalid_blocks, bad trigger, ...),
    a bad view_submission ack or an unimplemented method is recorded in `problems`; `verify()` (run by
    the fixture at teardown) fails the test unless it called expect_unacked() / expect_rejected() /
    expect_problem(kind). EmulatorUsageError means the test asked for something a person could not do.
"""

from .emulator import DEFAULT_SCOPES, SlackEmulator
from .errors import AckTimeout, DeliveryLost, EmulatorUsageError, NotConnected, SlackError, WaitTimeout
from .models import Call, Channel, EnvelopeResult, Ephemeral, Message, Problem, User, Usergroup, View

__all__ = [
    "DEFAULT_SCOPES",
    "AckTimeout",
    "Call",
    "Channel",
    "DeliveryLost",
    "EmulatorUsageError",
    "Ephemeral",
    "EnvelopeResult",
    "Message",
    "NotConnected",
    "Problem",
    "SlackEmulator",
    "SlackError",
    "User",
    "Usergroup",
    "View",
    "WaitTimeout",
]
