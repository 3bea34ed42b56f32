"""Person helpers: payloads built from stored state, response_action handling, and clear test-bug errors."""

from __future__ import annotations

from datetime import date

import pytest

from sandbox.slack import EmulatorUsageError, View
from tests.emulator.helpers import button, modal, option, plain, section


def field(block_id: str, element: dict, **extra: object) -> dict:
    return {"type": "input", "block_id": block_id, "label": plain(block_id.title()), "element": element, **extra}


FORM = modal(
    field(
        "target",
        {
            "type": "static_select",
            "action_id": "pick",
            "option_groups": [
                {"label": plain("Databases"), "options": [option("Prod DB", "prod-db"), option("Staging DB", "stg-db")]}
            ],
        },
    ),
    field(
        "hours",
        {
            "type": "number_input",
            "action_id": "n",
            "is_decimal_allowed": False,
            "min_value": "1",
            "max_value": "8",
            "initial_value": "1",
        },
    ),
    field(
        "roles",
        {"type": "multi_static_select", "action_id": "roles", "options": [option("Read", "r"), option("Write", "w")]},
        optional=True,
    ),
    field("ack", {"type": "checkboxes", "action_id": "ack", "options": [option("I agree", "yes")]}, optional=True),
    field("day", {"type": "datepicker", "action_id": "day"}, optional=True),
    field("reason", {"type": "plain_text_input", "action_id": "why", "max_length": 20}),
    {"type": "actions", "elements": [button("Help", "help")]},
    callback_id="form",
    private_metadata='{"flow": "db"}',
)


async def open_view(slack, web, view: dict = FORM, user: str = "U_ALICE") -> View:
    opened = await web.views_open(trigger_id=slack.issue_trigger(user), view=view)
    return slack.view(opened["view"]["id"])


async def test_submission_state_is_built_from_the_views_own_inputs(slack, web, raw_bot):
    view = await open_view(slack, web)
    result = await slack.submit_view(
        view.id,
        {"target": "Prod DB", "roles": ["r", "Write"], "ack": "yes", "day": date(2030, 1, 2), "why": "incident 42"},
    )
    values = result.payload["view"]["state"]["values"]
    assert values["target"]["pick"] == {"type": "static_select", "selected_option": option("Prod DB", "prod-db")}
    assert values["hours"]["n"] == {"type": "number_input", "value": "1"}  # the initial value, untouched
    assert [o["value"] for o in values["roles"]["roles"]["selected_options"]] == ["r", "w"]
    assert values["ack"]["ack"]["selected_options"] == [option("I agree", "yes")]
    assert values["day"]["day"] == {"type": "datepicker", "selected_date": "2030-01-02"}
    assert values["reason"]["why"] == {"type": "plain_text_input", "value": "incident 42"}
    assert result.payload["view"]["private_metadata"] == '{"flow": "db"}'
    assert result.payload["type"] == "view_submission" and result.payload["user"]["id"] == "U_ALICE"
    assert not view.is_open and view.closed_how == "submitted"


async def test_empty_optional_inputs_are_sent_as_null(slack, web, raw_bot):
    view = await open_view(slack, web)
    result = await slack.submit_view(view, {"target": "stg-db", "reason": "x"})
    values = result.payload["view"]["state"]["values"]
    assert values["roles"]["roles"]["selected_options"] == [] and values["day"]["day"]["selected_date"] is None


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"target": "prod-db", "reason": "x", "colour": "red"}, "has no input 'colour'"),
        ({"target": "Mongo", "reason": "x"}, "no option 'Mongo'; the element offers 'prod-db' ('Prod DB')"),
        ({"target": "prod-db"}, "'reason' ('Reason') is required"),
        ({"target": "prod-db", "reason": "x" * 21}, "max_length=20"),
        ({"target": "prod-db", "reason": "x", "hours": 9}, "max_value=8"),
        ({"target": "prod-db", "reason": "x", "hours": 1.5}, "does not allow decimals"),
    ],
)
async def test_impossible_submissions_are_test_bugs(slack, web, raw_bot, values, message):
    view = await open_view(slack, web)
    with pytest.raises(EmulatorUsageError, match=message.replace("(", r"\(").replace(")", r"\)")):
        await slack.submit_view(view, values)
    assert view.is_open and slack.envelopes == []


async def test_response_actions_are_applied(slack, web, raw_bot):
    second = modal(section("step 2"), title="Step 2")
    answers = iter(
        [
            {"response_action": "errors", "errors": {"reason": "too short"}},
            {
                "response_action": "update",
                "view": modal(section("updated"), field("reason", FORM["blocks"][5]["element"]), title="Updated"),
            },
            {"response_action": "push", "view": second},
            {"response_action": "clear"},
        ]
    )
    raw_bot.answer = lambda envelope: next(answers)
    view = await open_view(slack, web)
    errored = await slack.submit_view(view, {"target": "prod-db", "reason": "x"})
    assert errored.view is view and view.errors == {"reason": "too short"}
    updated = await slack.submit_view(view, {"target": "prod-db", "reason": "longer"})
    assert updated.view is view and view.title == "Updated" and view.is_open
    assert view.state_values["reason"]["why"]["value"] == "longer"  # kept across the update, as in Slack
    pushed = await slack.submit_view(view)
    assert pushed.view.title == "Step 2" and pushed.view.previous_view_id == view.id
    assert [v.title for v in slack.open_views("U_ALICE")] == ["Updated", "Step 2"]
    await slack.submit_view(view)
    assert slack.open_views("U_ALICE") == [] and view.closed_how == "cleared"


async def test_an_errors_ack_naming_no_input_is_a_bot_bug(slack, web, raw_bot):
    raw_bot.answer = lambda envelope: {"response_action": "errors", "errors": {"nonexistent": "bad"}}
    view = await open_view(slack, web)
    await slack.submit_view(view, {"target": "prod-db", "reason": "x"})
    assert [p.kind for p in slack.problems] == ["invalid_ack"]
    slack.expect_rejected()


async def test_an_invalid_update_view_in_an_ack_is_a_bot_bug(slack, web, raw_bot):
    raw_bot.answer = lambda envelope: {"response_action": "update", "view": modal(title="t" * 30)}
    view = await open_view(slack, web)
    result = await slack.submit_view(view, {"target": "prod-db", "reason": "x"})
    assert result.view is view and view.title == "Request access"
    assert "must be less than 25 characters" in slack.problems[0].detail
    slack.expect_rejected()


async def test_click_builds_block_actions_from_the_stored_message(slack, web, raw_bot):
    posted = await web.chat_postMessage(
        channel="C_APPROVALS",
        text="req",
        blocks=[
            section("request", accessory=button("Details", "details", value="42")),
            {"type": "actions", "elements": [button("Approve", "approve", value="42", style="primary")]},
        ],
    )
    result = await slack.click("C_APPROVALS", posted["ts"], action_id="approve", user="U_BOB")
    payload = result.payload
    assert payload["type"] == "block_actions" and payload["user"]["id"] == "U_BOB"
    assert payload["channel"] == {"id": "C_APPROVALS", "name": "approvals"}
    assert payload["message"]["ts"] == posted["ts"] and payload["message"]["blocks"][1]["elements"][0]["value"] == "42"
    (action,) = payload["actions"]
    assert (action["type"], action["value"], action["style"], action["text"]) == (
        "button",
        "42",
        "primary",
        plain("Approve"),
    )
    assert action["block_id"] == slack.message("C_APPROVALS", posted["ts"]).blocks[1]["block_id"]
    accessory = await slack.click(slack.message("C_APPROVALS", posted["ts"]), text="Details", user="U_BOB")
    assert accessory.payload["actions"][0]["action_id"] == "details"


async def test_clicking_what_is_not_there_is_a_test_bug(slack, web, raw_bot):
    posted = await web.chat_postMessage(
        channel="C_APPROVALS", text="req", blocks=[{"type": "actions", "elements": [button("Approve", "approve")]}]
    )
    with pytest.raises(EmulatorUsageError, match="no element matching {'text': 'Deny'}.*'Approve'"):
        await slack.click("C_APPROVALS", posted["ts"], text="Deny", user="U_BOB")
    with pytest.raises(EmulatorUsageError, match="no message '1.000000'"):
        await slack.click("C_APPROVALS", "1.000000", text="Approve", user="U_BOB")
    with pytest.raises(EmulatorUsageError, match="no user 'U_NOBODY'"):
        await slack.click("C_APPROVALS", posted["ts"], text="Approve", user="U_NOBODY")
    assert slack.envelopes == []


async def test_selecting_in_an_input_without_dispatch_is_refused(slack, web, raw_bot):
    view = await open_view(slack, web)
    with pytest.raises(EmulatorUsageError, match="no dispatch_action"):
        await slack.select_in_view(view, "pick", "prod-db")
    clicked = await slack.click_in_view(view, text="Help")
    assert clicked.payload["container"] == {"type": "view", "view_id": view.id}


async def test_close_with_clear_on_close_closes_the_whole_stack(slack, web, raw_bot):
    root = await open_view(slack, web, modal(section("root"), notify_on_close=True))
    await web.views_push(
        trigger_id=slack.issue_trigger("U_ALICE"), view=modal(section("top"), clear_on_close=True, notify_on_close=True)
    )
    result = await slack.close_view(slack.latest_view("U_ALICE"))
    assert result.payload["is_cleared"] is True and slack.open_views("U_ALICE") == [] and not root.is_open


async def test_an_acked_slash_command_needs_a_known_user_and_channel(slack, raw_bot):
    with pytest.raises(EmulatorUsageError, match="no channel 'C_NOPE'"):
        await slack.slash_command(user="U_ALICE", channel="C_NOPE")
    result = await slack.slash_command(user="U_ALICE", text="prod")
    assert (result.payload["channel_id"], result.payload["user_name"], result.payload["text"]) == (
        "D_ALICE",
        "alice",
        "prod",
    )


async def test_a_redelivered_submission_does_not_reapply_to_a_closed_view(slack, web, raw_bot):
    view = await open_view(slack, web)
    first = await slack.submit_view(view, {"target": "prod-db", "reason": "x"})
    again = await slack.redeliver(first, retry_attempt=2, retry_reason="timeout")
    assert (again.envelope["retry_attempt"], again.envelope["retry_reason"]) == (2, "timeout")
    assert again.acked and again.view is None and view.closed_how == "submitted"
    assert "retry 2" in repr(again) and "view_submission callback_id='form' by U_ALICE" in repr(again)
