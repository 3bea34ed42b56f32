"""The emulator's Web API, driven through slack_sdk's AsyncWebClient exactly as the bot calls it."""

from __future__ import annotations

import asyncio
import json
import re
import time

import aiohttp
import pytest
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_async_handlers import AsyncRateLimitErrorRetryHandler
from slack_sdk.web.async_client import AsyncWebClient

from sandbox.slack import SlackEmulator
from tests.emulator.helpers import ManualClock, modal, plain, section


async def error_of(call) -> SlackApiError:
    with pytest.raises(SlackApiError) as caught:
        await call
    return caught.value


async def test_auth_test_names_the_bot_and_reports_scopes(slack, web):
    response = await web.auth_test()
    assert (response["user_id"], response["bot_id"], response["team_id"]) == ("U_JITBOT", "B_JITBOT", "T_EMULATOR")
    assert "users:read.email" in response.headers["x-oauth-scopes"]


async def test_tokens_are_checked_per_method(slack):
    def client(token):
        return AsyncWebClient(token=token, base_url=slack.api_url)

    assert (await error_of(client(None).auth_test())).response["error"] == "not_authed"
    assert (await error_of(client("xoxb-wrong").auth_test())).response["error"] == "invalid_auth"
    assert (await error_of(client(slack.app_token).auth_test())).response["error"] == "not_allowed_token_type"
    opened = await client(None).apps_connections_open(app_token=slack.app_token)
    assert re.fullmatch(rf"ws://127\.0\.0\.1:{slack.port}/link/\?ticket=\w+&app_id=A_JITBOT", opened["url"])
    for token, error in (("xapp-wrong", "invalid_auth"), (slack.bot_token, "not_allowed_token_type")):
        assert (await error_of(client(None).apps_connections_open(app_token=token))).response["error"] == error
    assert [c.response.get("error") for c in slack.calls("auth.test")] == [
        "not_authed",
        "invalid_auth",
        "not_allowed_token_type",
    ]


async def test_form_posts_with_json_strings_and_unknown_args_are_accepted(slack):
    blocks = json.dumps([section("from a form post")])
    async with aiohttp.ClientSession() as session:
        async with session.post(
            f"{slack.api_url}chat.postMessage?team_id=T1",
            data={"token": slack.bot_token, "channel": "C_ALERTS", "blocks": blocks},
        ) as response:
            body = await response.json()
    assert body["ok"] and body["channel"] == "C_ALERTS"
    (message,) = slack.messages_in("C_ALERTS")
    assert message.blocks[0]["text"]["text"] == "from a form post"
    assert slack.calls("chat.postMessage")[0].args["team_id"] == "T1"


async def test_unknown_method_is_refused_and_reported(slack, web):
    assert (await error_of(web.api_call("chat.scheduleMessage"))).response["error"] == "unknown_method"
    assert [p.kind for p in slack.problems] == ["unknown_method"]
    slack.expect_problem("unknown_method")


async def test_directory_lookups(slack, web):
    alice = (await web.users_info(user="U_ALICE"))["user"]
    assert (alice["profile"]["email"], alice["real_name"], alice["is_bot"], alice["deleted"]) == (
        "alice@example.com",
        "Alice Requester",
        False,
        False,
    )
    assert (await web.users_lookupByEmail(email="BOB@example.com"))["user"]["id"] == "U_BOB"
    assert (await web.usergroups_users_list(usergroup="S_SECOPS"))["users"] == ["U_BOB", "U_CAROL"]
    slack.add_user("U_GONE", email="gone@example.com", deleted=True)
    assert (await web.users_info(user="U_GONE"))["user"]["deleted"] is True
    for call, error in (
        (web.users_info(user="U_NOBODY"), "user_not_found"),
        (web.users_lookupByEmail(email="nobody@example.com"), "users_not_found"),
        (web.usergroups_users_list(usergroup="S_NONE"), "no_such_subteam"),
    ):
        assert (await error_of(call)).response["error"] == error


async def test_dm_channel_is_stable_and_user_ids_land_in_it(slack, web):
    opened = await web.conversations_open(users="U_ALICE")
    again = await web.conversations_open(users=["U_ALICE"])
    assert opened["channel"]["id"] == again["channel"]["id"] == "D_ALICE" and again["already_open"]
    via_user = await web.chat_postMessage(channel="U_ALICE", text="hello via user id")
    via_im = await web.chat_postMessage(channel="D_ALICE", text="hello via IM id")
    assert via_user["channel"] == "D_ALICE"
    assert [m.text for m in slack.dms_to("U_ALICE")] == ["hello via user id", "hello via IM id"]
    assert slack.dms_to("U_BOB") == []
    assert via_user["ts"] < via_im["ts"]


async def test_posting_by_channel_name_answers_with_the_id(slack, web):
    posted = await web.chat_postMessage(channel="#alerts", text="by name")
    assert posted["channel"] == "C_ALERTS" and slack.messages_in("C_ALERTS")[0].text == "by name"


async def test_message_ts_values_are_unique_increasing_and_slack_shaped(slack, web):
    posted = await asyncio.gather(*(web.chat_postMessage(channel="C_ALERTS", text=str(i)) for i in range(20)))
    stamps = [m.ts for m in slack.messages_in("C_ALERTS")]
    assert len(set(stamps)) == 20 and stamps == sorted(stamps)
    assert all(re.fullmatch(r"\d{10}\.\d{6}", r["ts"]) for r in posted)


async def test_chat_update_edits_in_place_and_keeps_history(slack, web):
    posted = await web.chat_postMessage(channel="C_APPROVALS", text="pending", blocks=[section("*pending*")])
    await web.chat_update(channel="C_APPROVALS", ts=posted["ts"], text="approved", blocks=[section("*approved*")])
    message = slack.message("C_APPROVALS", posted["ts"])
    assert (message.text, message.edited, len(slack.messages_in("C_APPROVALS"))) == ("approved", True, 1)
    assert [v.text for v in message.history] == ["pending"] and message.history[0].via == "chat.update"
    missing = await error_of(web.chat_update(channel="C_APPROVALS", ts="1.000001", text="x"))
    assert missing.response["error"] == "message_not_found"
    dm = await web.chat_postMessage(channel="U_ALICE", text="pending")
    by_user_id = await error_of(web.chat_update(channel="U_ALICE", ts=dm["ts"], text="done"))
    assert by_user_id.response["error"] == "channel_not_found" and slack.problems[0].kind == "rejected"
    await web.chat_update(channel=dm["channel"], ts=dm["ts"], text="done")
    assert [m.text for m in slack.dms_to("U_ALICE")] == ["done"]
    slack.expect_rejected()


async def test_chat_errors_use_slacks_codes(slack, web):
    slack.add_channel("C_SECRET", bot_is_member=False)
    slack.add_channel("C_SMALL", members=["U_BOB"])
    for call, error in (
        (web.chat_postMessage(channel="C_NOWHERE", text="x"), "channel_not_found"),
        (web.chat_postMessage(channel="C_SECRET", text="x"), "not_in_channel"),
        (web.chat_postEphemeral(channel="C_SMALL", user="U_ALICE", text="x"), "user_not_in_channel"),
        (web.chat_postEphemeral(channel="C_SMALL", user="U_NOBODY", text="x"), "user_not_found"),
    ):
        assert (await error_of(call)).response["error"] == error
    assert slack.problems == []


async def test_ephemerals_are_recorded_per_user(slack, web):
    await web.chat_postEphemeral(channel="C_APPROVALS", user="U_CAROL", text="only you can see this")
    (ephemeral,) = slack.ephemerals_to("U_CAROL")
    assert (ephemeral.channel, ephemeral.source, ephemeral.text) == (
        "C_APPROVALS",
        "chat.postEphemeral",
        "only you can see this",
    )


@pytest.mark.filterwarnings("ignore:The top-level `text` argument is missing:UserWarning")
@pytest.mark.parametrize(
    ("kwargs", "error", "detail"),
    [
        (
            {"text": "t", "blocks": [section("x")] * 51},
            "invalid_blocks",
            "no more than 50 items allowed [json-pointer:/blocks]",
        ),
        ({"text": "t", "blocks": [section("x" * 3001)]}, "invalid_blocks", "must be less than 3001 characters"),
        ({}, "no_text", "a message needs `text`, `blocks` or `attachments`"),
        ({"text": "x" * 40_001}, "msg_too_long", "40000"),
    ],
)
async def test_payloads_slack_refuses_raise_in_the_sdk_and_are_reported(slack, web, kwargs, error, detail):
    refused = await error_of(web.chat_postMessage(channel="C_ALERTS", **kwargs))
    assert refused.response["error"] == error
    assert any(detail in m for m in refused.response["response_metadata"]["messages"])
    assert slack.messages_in("C_ALERTS") == []
    assert [p.kind for p in slack.problems] == ["rejected"] and detail in slack.problems[0].detail
    with pytest.raises(AssertionError, match=error):
        slack.verify()
    slack.expect_rejected()


async def test_rate_limit_is_retried_by_the_sdk_handler(slack):
    slack.rate_limit("chat.postMessage", times=1, retry_after=0)
    client = AsyncWebClient(
        token=slack.bot_token,
        base_url=slack.api_url,
        retry_handlers=[AsyncRateLimitErrorRetryHandler(max_retry_count=1)],
    )
    response = await client.chat_postMessage(channel="C_ALERTS", text="eventually")
    assert response["ok"]
    first, second = slack.calls("chat.postMessage")
    assert (first.status, first.response["error"], first.fault) == (429, "ratelimited", "ratelimited")
    assert second.status == 200 and len(slack.messages_in("C_ALERTS")) == 1


async def test_rate_limit_without_a_retry_handler_surfaces_retry_after(slack, web):
    slack.rate_limit("users.info", retry_after=7)
    refused = await error_of(web.users_info(user="U_ALICE"))
    assert (refused.response.status_code, refused.response.headers["Retry-After"]) == (429, "7")


async def test_fail_and_delay_faults(slack, web):
    slack.fail("users.info", error="fatal_error", times=2)
    for _ in range(2):
        assert (await error_of(web.users_info(user="U_ALICE"))).response["error"] == "fatal_error"
    assert (await web.users_info(user="U_ALICE"))["ok"]
    slack.delay("auth.test", 0.1, times=1)
    started = time.monotonic()
    await web.auth_test()
    assert time.monotonic() - started >= 0.1
    assert slack.problems == []


async def test_wait_for_wakes_on_state_changes(slack, web):
    waiter = asyncio.create_task(slack.wait_for_message("C_ALERTS", contains="deploy", timeout=2))
    await web.chat_postMessage(channel="C_ALERTS", text="unrelated")
    await web.chat_postMessage(channel="C_ALERTS", text="deploy finished")
    assert (await waiter).text == "deploy finished"
    next_one = asyncio.create_task(slack.next_message("C_ALERTS", timeout=2))
    await asyncio.sleep(0)
    await web.chat_postMessage(channel="C_ALERTS", text="third")
    assert (await next_one).text == "third"
    with pytest.raises(AssertionError, match="containing 'never'.*deploy finished"):
        await slack.wait_for_message("C_ALERTS", contains="never", timeout=0.05)


async def test_views_open_needs_a_fresh_single_use_trigger():
    clock = ManualClock()
    async with SlackEmulator(clock=clock) as slack:
        slack.add_user("U_ALICE")
        web = AsyncWebClient(token=slack.bot_token, base_url=slack.api_url)
        trigger = slack.issue_trigger("U_ALICE")
        opened = await web.views_open(trigger_id=trigger, view=modal(section("hi")))
        assert slack.latest_view("U_ALICE").id == opened["view"]["id"]
        reused = await error_of(web.views_open(trigger_id=trigger, view=modal(section("again"))))
        late = slack.issue_trigger("U_ALICE")
        clock.advance(3.01)
        expired = await error_of(web.views_open(trigger_id=late, view=modal(section("late"))))
        bogus = await error_of(web.views_open(trigger_id="123.456.abc", view=modal(section("?"))))
        assert [e.response["error"] for e in (reused, expired, bogus)] == [
            "exchanged_trigger_id",
            "expired_trigger_id",
            "invalid_trigger_id",
        ]
        assert [p.kind for p in slack.problems] == ["rejected"] * 3


async def test_an_invalid_view_is_refused_with_invalid_arguments(slack, web):
    refused = await error_of(web.views_open(trigger_id=slack.issue_trigger("U_ALICE"), view=modal(title="t" * 25)))
    assert refused.response["error"] == "invalid_arguments"
    assert refused.response["response_metadata"]["messages"] == [
        "[ERROR] must be less than 25 characters [json-pointer:/view/title/text]"
    ]
    huge = modal(*[section("x" * 2900)] * 90)
    too_large = await error_of(web.views_open(trigger_id=slack.issue_trigger("U_ALICE"), view=huge))
    assert too_large.response["error"] == "view_too_large"
    assert slack.open_views("U_ALICE") == []
    slack.expect_rejected()


async def test_views_update_by_id_or_external_id_and_hash_conflict(slack, web):
    opened = (
        await web.views_open(trigger_id=slack.issue_trigger("U_ALICE"), view=modal(section("v1"), external_id="req-1"))
    )["view"]
    v2 = modal(section("v2"), external_id="req-1")
    updated = (await web.views_update(view_id=opened["id"], hash=opened["hash"], view=v2))["view"]
    assert updated["id"] == opened["id"] and updated["hash"] != opened["hash"]
    stale = await error_of(web.views_update(view_id=opened["id"], hash=opened["hash"], view=modal(section("v3"))))
    assert stale.response["error"] == "hash_conflict"
    await web.views_update(external_id="req-1", view=modal(section("v4"), external_id="req-1"))
    view = slack.latest_view("U_ALICE")
    assert "v4" in view.plain and len(view.history) == 2
    missing = await error_of(web.views_update(view_id="V_NONE", view=modal(section("x"))))
    assert missing.response["error"] == "not_found"


async def test_view_stack_holds_at_most_three(slack, web):
    await web.views_open(trigger_id=slack.issue_trigger("U_ALICE"), view=modal(section("1")))
    for n in (2, 3):
        pushed = await web.views_push(trigger_id=slack.issue_trigger("U_ALICE"), view=modal(section(str(n))))
    assert pushed["view"]["previous_view_id"] == slack.open_views("U_ALICE")[1].id
    refused = await error_of(web.views_push(trigger_id=slack.issue_trigger("U_ALICE"), view=modal(section("4"))))
    assert refused.response["error"] == "push_limit_reached"
    assert [v.plain.split("\n")[-1] for v in slack.open_views("U_ALICE")] == ["1", "2", "3"]
    slack.expect_rejected()


async def test_response_url_replaces_the_original_message(slack, web, raw_bot):
    posted = await web.chat_postMessage(
        channel="C_APPROVALS",
        text="pending",
        blocks=[{"type": "actions", "elements": [{"type": "button", "text": plain("Approve"), "action_id": "ok"}]}],
    )
    click = await slack.click("C_APPROVALS", posted["ts"], text="Approve", user="U_BOB")
    async with aiohttp.ClientSession() as session:
        url = click.payload["response_url"]
        async with session.post(url, json={"replace_original": True, "text": "approved"}) as response:
            assert response.status == 200
        async with session.post(url, json={"text": "just for you"}) as response:
            assert response.status == 200
    assert slack.message("C_APPROVALS", posted["ts"]).text == "approved"
    assert [e.text for e in slack.ephemerals_to("U_BOB")] == ["just for you"]
