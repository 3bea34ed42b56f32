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

People (async; each returns an EnvelopeResult with .envelope, .ack_payload, .latency, .view):
    slash_command(user=, command="/sym", text="", channel=None)      fresh single-use trigger_id (3 s)
    submit_view(view_or_id, values={block_id|action_id: python value}, user=None)
    select_in_view(view_or_id, action_id, value, user=None)          block_actions from a modal
    click(channel_or_message, ts=None, user=, text=|action_id=)      a button on a stored message
    click_in_view(view_or_id, text=|action_id=), close_view(view_or_id) (None unless notify_on_close)
    redeliver(result, retry_attempt=1, retry_reason="timeout"), send_event(event), send_envelope(...)
Socket Mode: wait_connected(n), disconnect(reason), drop_connections(abort=False), connection_count.
Queries: messages_in(ch), message(ch, ts), dms_to(u), ephemerals_to(u), calls(method), open_views(u),
    latest_view(u), view(id), envelopes, ack_latencies, problems.
Waits (woken by state changes, no polling): wait_for(fn), wait_for_message(ch, contains=),
    wait_for_dm(u, contains=), wait_for_ephemeral(u, ...), wait_for_view(u, ...), wait_for_call(m),
    next_message(ch).
Faults: fail(method, error=, times=1), rate_limit(method, times=1, retry_after=1), delay(method, s).
Strictness: an unacked envelope (AckTimeout), a payload Slack rejects (invalid_blocks, bad trigger...),
    a bad view_submission ack or an unimplemented method is a Problem; `verify()` (run by the fixture)
    fails the test unless it called expect_unacked() / expect_rejected(). EmulatorUsageError means
    the test asked for something a person could not do.
"""

from .emulator import DEFAULT_SCOPES, SlackEmulator
from .models import (
    AckTimeout,
    Call,
    Channel,
    EmulatorUsageError,
    Ephemeral,
    EnvelopeResult,
    Message,
    NotConnected,
    Problem,
    User,
    Usergroup,
    View,
    WaitTimeout,
)

__all__ = [
    "DEFAULT_SCOPES", "AckTimeout", "Call", "Channel", "EmulatorUsageError", "Ephemeral", "EnvelopeResult",
    "Message", "NotConnected", "Problem", "SlackEmulator", "User", "Usergroup", "View", "WaitTimeout",
]
