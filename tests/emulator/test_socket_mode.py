"""A real Bolt AsyncApp + AsyncSocketModeHandler against the emulator over a real WebSocket."""

from __future__ import annotations

import asyncio
import json

import aiohttp
import pytest

from sandbox.slack import AckTimeout, NotConnected
from tests.emulator.helpers import button, modal, option, plain, section

REQUEST_MODAL = modal(
    {
        "type": "input",
        "block_id": "target",
        "label": plain("Target"),
        "element": {
            "type": "static_select",
            "action_id": "pick",
            "placeholder": plain("Pick one"),
            "options": [option("Prod DB", "prod-db"), option("Staging", "staging")],
        },
    },
    {
        "type": "input",
        "block_id": "reason",
        "label": plain("Reason"),
        "element": {"type": "plain_text_input", "action_id": "why"},
    },
    callback_id="request",
)


def register_request_flow(app, seen: list) -> None:
    """The /sym → modal → post → Approve → chat.update loop, the way jitbot does it."""

    @app.command("/sym")
    async def open_modal(ack, body, client):
        await ack()
        await client.views_open(trigger_id=body["trigger_id"], view=REQUEST_MODAL)

    @app.view("request")
    async def submitted(ack, body, view, client):
        values = view["state"]["values"]
        if len(values["reason"]["why"]["value"]) < 3:
            await ack(response_action="errors", errors={"reason": "Say a bit more"})
            return
        await ack()
        target = values["target"]["pick"]["selected_option"]["value"]
        requester = body["user"]["id"]
        await client.chat_postMessage(
            channel="C_APPROVALS",
            text=f"{requester} requests {target}",
            blocks=[
                section(f"<@{requester}> requests *{target}*"),
                {
                    "type": "actions",
                    "block_id": "decide",
                    "elements": [button("Approve", "approve", style="primary"), button("Deny", "deny", style="danger")],
                },
            ],
        )
        await client.chat_postMessage(channel=requester, text=f"Your request for {target} is waiting")

    @app.action("approve")
    async def approve(ack, body, client):
        await ack()
        seen.append(body)
        await client.chat_update(
            channel=body["container"]["channel_id"],
            ts=body["container"]["message_ts"],
            text=f"Approved by <@{body['user']['id']}>",
            blocks=[section(f"Approved by <@{body['user']['id']}>")],
        )


async def test_slash_modal_submit_post_click_update(slack, bolt):
    seen: list = []
    register_request_flow(bolt.app, seen)
    await bolt.connect()

    command = await slack.slash_command(user="U_ALICE", command="/sym", text="prod")
    view = await slack.wait_for_view("U_ALICE", contains="Target")
    assert (command.acked, view.callback_id) == (True, "request")
    assert slack.calls("views.open")[0].args["trigger_id"] == command.trigger_id

    refused = await slack.submit_view(view, {"target": "Prod DB", "reason": "no"}, user="U_ALICE")
    assert refused.errors == {"reason": "Say a bit more"} and refused.view is view and view.is_open
    submitted = await slack.submit_view(view, {"reason": "incident 42"})
    assert submitted.view is None and not view.is_open

    request = await slack.wait_for_message("C_APPROVALS", contains="prod-db")
    await slack.wait_for_dm("U_ALICE", contains="waiting")
    assert request.button_texts == ["Approve", "Deny"]

    click = await slack.click(request, text="Approve", user="U_BOB")
    updated = await slack.wait_for_message("C_APPROVALS", contains="Approved by <@U_BOB>")
    assert updated.ts == request.ts and updated.buttons == [] and len(slack.messages_in("C_APPROVALS")) == 1
    assert [v.text for v in updated.history] == ["U_ALICE requests prod-db"]
    (body,) = seen
    assert body["container"] == {
        "type": "message",
        "message_ts": request.ts,
        "channel_id": "C_APPROVALS",
        "is_ephemeral": False,
    }
    assert body["actions"][0]["action_id"] == "approve" and body["message"]["ts"] == request.ts
    assert body["trigger_id"] and body["response_url"].startswith(slack.base_url)
    assert click.latency < 3 and len(slack.ack_latencies) == 4
    assert [c.method for c in slack.calls()][:2] == ["apps.connections.open", "auth.test"]


async def test_disconnect_makes_the_bot_reconnect(slack, bolt):
    @bolt.app.command("/sym")
    async def noop(ack):
        await ack()

    await bolt.connect()
    assert await slack.disconnect("refresh_requested") == 1
    await slack.wait_connected()
    assert slack.connects == 2 and len(slack.calls("apps.connections.open")) == 2
    assert (await slack.slash_command(user="U_ALICE")).acked


async def test_a_dropped_socket_is_reopened(slack, bolt):
    @bolt.app.command("/sym")
    async def noop(ack):
        await ack()

    await bolt.connect()
    await slack.drop_connections()
    await slack.wait_connected()
    assert slack.connects == 2
    assert (await slack.slash_command(user="U_ALICE")).acked


async def test_redelivered_envelope_carries_retry_info(slack, bolt):
    retries: list = []

    @bolt.app.command("/sym")
    async def record(ack, request):
        await ack()
        retries.append((request.headers.get("x-slack-retry-num"), request.headers.get("x-slack-retry-reason")))

    await bolt.connect()
    first = await slack.slash_command(user="U_ALICE")
    again = await slack.redeliver(first, retry_attempt=1, retry_reason="timeout")
    assert retries == [(None, None), (["1"], ["timeout"])]
    assert again.payload == first.payload and again.envelope_id != first.envelope_id


async def test_unacked_envelope_is_detected(slack, bolt):
    slack.ack_timeout = 0.3
    await bolt.connect()  # no listener for /sym: Bolt answers 404 internally and sends no ack
    with pytest.raises(AckTimeout, match="/sym by U_ALICE .* was not acked"):
        await slack.slash_command(user="U_ALICE")
    assert [p.kind for p in slack.problems] == ["unacked"]
    with pytest.raises(AssertionError, match="not acked within 0.3s; Bolt sends no ack"):
        slack.verify()
    slack.expect_unacked()


async def test_each_envelope_goes_to_exactly_one_connection(slack, bolt):
    handled: list = []

    @bolt.app.command("/sym")
    async def count(ack, body):
        await ack()
        handled.append(body["text"])

    await bolt.connect(connections=2)
    results = [await slack.slash_command(user="U_ALICE", text=str(i)) for i in range(40)]
    assert sorted(handled) == sorted(str(i) for i in range(40))
    # Any one connection, no pattern: 40 envelopes all on one of two connections is a 2^-39 chance.
    assert {r.connection_id for r in results} == {c.id for c in slack.socket.usable()}


async def test_select_in_modal_dispatches_and_stale_hash_conflicts(slack, bolt):
    conflicts: list = []
    view = modal(
        {
            "type": "input",
            "block_id": "flow",
            "dispatch_action": True,
            "label": plain("Flow"),
            "element": {
                "type": "static_select",
                "action_id": "flow_pick",
                "options": [option("AWS", "aws"), option("Okta", "okta")],
            },
        },
        callback_id="request",
    )

    @bolt.app.command("/sym")
    async def open_modal(ack, body, client):
        await ack()
        await client.views_open(trigger_id=body["trigger_id"], view=view)

    @bolt.app.action("flow_pick")
    async def flow_picked(ack, body, client):
        await ack()
        picked = body["actions"][0]["selected_option"]["value"]
        stale_hash = body["view"]["hash"]
        await client.views_update(
            view_id=body["view"]["id"],
            hash=stale_hash,
            view={**view, "blocks": view["blocks"] + [section(f"You picked {picked}")]},
        )
        try:
            await client.views_update(view_id=body["view"]["id"], hash=stale_hash, view=view)
        except Exception as error:  # noqa: BLE001 - the test inspects what the SDK raised
            conflicts.append(error.response["error"])

    await bolt.connect()
    await slack.slash_command(user="U_ALICE")
    opened = await slack.wait_for_view("U_ALICE")
    selected = await slack.select_in_view(opened, "flow_pick", "Okta")
    assert selected.payload["container"] == {"type": "view", "view_id": opened.id}
    assert selected.payload["view"]["state"]["values"]["flow"]["flow_pick"]["selected_option"]["value"] == "okta"
    await slack.wait_for_view("U_ALICE", contains="You picked okta")
    await slack.wait_for(lambda: conflicts == ["hash_conflict"], description="the stale update to conflict")


async def test_slash_command_ack_text_is_an_ephemeral_to_the_user(slack, bolt):
    @bolt.app.command("/sym")
    async def usage(ack):
        await ack(text="Usage: /sym [flow]")

    await bolt.connect()
    await slack.slash_command(user="U_CAROL", channel="C_ALERTS")
    (ephemeral,) = slack.ephemerals_to("U_CAROL")
    assert (ephemeral.channel, ephemeral.source, ephemeral.text) == (
        "C_ALERTS",
        "slash_command_ack",
        "Usage: /sym [flow]",
    )


async def test_view_closed_only_when_the_bot_asked(slack, bolt):
    closed: list = []

    @bolt.app.command("/sym")
    async def open_modal(ack, body, client):
        await ack()
        await client.views_open(
            trigger_id=body["trigger_id"],
            view=modal(section("hi"), callback_id="c", notify_on_close=body["text"] == "notify"),
        )

    @bolt.app.view_closed("c")
    async def on_close(ack, body):
        await ack()
        closed.append(body["view"]["id"])

    await bolt.connect()
    await slack.slash_command(user="U_ALICE", text="quiet")
    quiet = await slack.wait_for_view("U_ALICE")
    assert await slack.close_view(quiet) is None and not quiet.is_open
    await slack.slash_command(user="U_ALICE", text="notify")
    loud = await slack.wait_for_view("U_ALICE")
    result = await slack.close_view(loud)
    assert result.acked and closed == [loud.id] and result.payload["is_cleared"] is False


async def test_hello_comes_first_and_tickets_are_single_use(slack):
    async with aiohttp.ClientSession() as session:
        async with session.post(
            f"{slack.api_url}apps.connections.open", headers={"Authorization": f"Bearer {slack.app_token}"}
        ) as response:
            url = (await response.json())["url"]
        async with session.ws_connect(url) as ws:
            hello = json.loads((await ws.receive()).data)
            assert (hello["type"], hello["num_connections"], hello["connection_info"]) == (
                "hello",
                1,
                {"app_id": "A_JITBOT"},
            )
            with pytest.raises(aiohttp.WSServerHandshakeError):
                await session.ws_connect(url)


async def test_no_connection_is_a_clear_error(slack):
    slack.connect_timeout = 0.05
    with pytest.raises(NotConnected, match="AsyncSocketModeHandler"):
        await asyncio.wait_for(slack.slash_command(user="U_ALICE"), 2)


async def test_events_reach_bolt_listeners(slack, bolt):
    mentions: list = []

    @bolt.app.event("app_mention")
    async def mentioned(event):
        mentions.append(event["text"])

    await bolt.connect()
    result = await slack.send_event(
        {"type": "app_mention", "user": "U_ALICE", "text": "<@U_JITBOT> hi", "channel": "C_ALERTS", "ts": "1.000001"}
    )
    assert result.acked and result.envelope["retry_attempt"] == 0
    await slack.wait_for(lambda: mentions == ["<@U_JITBOT> hi"], description="the mention to be handled")


async def test_an_aborted_socket_is_gone_for_delivery(slack, raw_bot):
    assert slack.connection_count == 1
    assert await slack.drop_connections(abort=True) == 1
    await slack.wait_for(lambda: not slack.socket.connections, description="the aborted socket to be reaped")
    slack.connect_timeout = 0.05
    with pytest.raises(NotConnected):
        await slack.slash_command(user="U_ALICE")
    assert slack.envelopes == []
