"""The emulator's App Home: views.publish as Slack checks it, app_home_opened, and clicks on the Home tab."""

from __future__ import annotations

import pytest
from slack_sdk.errors import SlackApiError

from tests.emulator.helpers import modal, section


def home(*blocks, **keys) -> dict:
    return {"type": "home", "blocks": list(blocks), **keys}


def button(text: str, action_id: str) -> dict:
    return {
        "type": "actions",
        "elements": [{"type": "button", "action_id": action_id, "text": {"type": "plain_text", "text": text}}],
    }


async def test_views_publish_sets_one_home_per_user_replacing_it_whole(slack, web):
    first = (await web.views_publish(user_id="U_ALICE", view=home(section("one"))))["view"]
    second = (await web.views_publish(user_id="U_ALICE", view=home(section("two"))))["view"]
    assert first["id"] == second["id"] and first["hash"] != second["hash"]
    assert "two" in slack.home_of("U_ALICE").plain and "one" not in slack.home_of("U_ALICE").plain
    assert slack.open_views("U_ALICE") == []  # a Home tab is not a modal
    stale = await _error(web.views_publish(user_id="U_ALICE", hash=first["hash"], view=home(section("three"))))
    assert stale.response["error"] == "hash_conflict"


@pytest.mark.parametrize(
    ("view", "message"),
    [
        (home(*[section(str(n)) for n in range(101)]), "no more than 100 items allowed"),
        (home(section("x"), title={"type": "plain_text", "text": "Home"}), "unsupported field for a home view: title"),
        (modal(section("a modal")), "views.publish takes a view of type home"),
    ],
)
async def test_a_home_view_slack_refuses_is_refused(slack, web, view, message):
    refused = await _error(web.views_publish(user_id="U_ALICE", view=view))
    assert refused.response["error"] == "invalid_arguments"
    assert any(message in m for m in refused.response["response_metadata"]["messages"])
    assert slack.home_of("U_ALICE") is None
    slack.expect_rejected()


async def test_opening_home_sends_app_home_opened_and_its_buttons_send_block_actions(slack, bolt):
    seen: list[dict] = []

    @bolt.app.event("app_home_opened")
    async def opened(event, client):
        await client.views_publish(user_id=event["user"], view=home(button("Go", "go")))

    @bolt.app.action("go")
    async def go(ack, body):
        await ack()
        seen.append(body)

    await bolt.connect()
    await slack.open_home("U_ALICE")
    await slack.wait_for_home("U_ALICE", contains="Go")
    await slack.click_in_home("U_ALICE", text="Go")
    await slack.wait_for(lambda: seen, description="the click")
    assert seen[0]["container"]["type"] == "view" and seen[0]["view"]["type"] == "home"


async def _error(call) -> SlackApiError:
    with pytest.raises(SlackApiError) as caught:
        await call
    return caught.value
