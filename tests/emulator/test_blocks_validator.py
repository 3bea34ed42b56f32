"""The Block Kit checks Slack applies server-side, one rule per case."""

from __future__ import annotations

import pytest

from sandbox.slack.blocks_validator import validate_message_blocks, validate_view
from tests.emulator.helpers import button, modal, option, plain, section


def select(options: list[dict], **extra: object) -> dict:
    return {"type": "static_select", "action_id": "pick", "placeholder": plain("Pick"), "options": options, **extra}


def input_block(element: dict, block_id: str = "in", **extra: object) -> dict:
    return {"type": "input", "block_id": block_id, "label": plain("Label"), "element": element, **extra}


VALID_MESSAGE = [
    {"type": "header", "text": plain("Access request")},
    section(
        "*alice* wants *prod-db*",
        fields=[{"type": "mrkdwn", "text": "*For*\n1h"}],
        accessory=button("Details", "details"),
    ),
    {"type": "context", "elements": [{"type": "mrkdwn", "text": "id 42"}]},
    {"type": "divider"},
    {
        "type": "actions",
        "block_id": "decide",
        "elements": [
            button("Approve", "approve", style="primary"),
            button(
                "Deny",
                "deny",
                style="danger",
                confirm={
                    "title": plain("Sure?"),
                    "text": plain("Deny it"),
                    "confirm": plain("Deny"),
                    "deny": plain("Back"),
                },
            ),
        ],
    },
]


def test_a_well_formed_message_passes():
    assert validate_message_blocks(VALID_MESSAGE) == []


@pytest.mark.parametrize(
    ("blocks", "expected"),
    [
        pytest.param([section("x")] * 51, "no more than 50 items allowed [json-pointer:/blocks]", id="51-blocks"),
        pytest.param(
            [section("x" * 3001)],
            "must be less than 3001 characters [json-pointer:/blocks/0/text/text]",
            id="section-text-3001",
        ),
        pytest.param(
            [section("")], "must be more than 0 characters [json-pointer:/blocks/0/text/text]", id="empty-mrkdwn"
        ),
        pytest.param([{"type": "header", "text": plain("")}], "must be more than 0 characters", id="empty-plain"),
        pytest.param(
            [{"type": "header", "text": plain("h" * 151)}], "must be less than 151 characters", id="header-151"
        ),
        pytest.param(
            [{"type": "header", "text": {"type": "mrkdwn", "text": "*h*"}}],
            "must be a plain_text object",
            id="header-mrkdwn",
        ),
        pytest.param(
            [{"type": "section", "fields": [{"type": "mrkdwn", "text": "f"}] * 11}],
            "no more than 10 items allowed [json-pointer:/blocks/0/fields]",
            id="11-fields",
        ),
        pytest.param(
            [{"type": "section", "fields": [{"type": "mrkdwn", "text": "f" * 2001}]}],
            "must be less than 2001 characters [json-pointer:/blocks/0/fields/0/text]",
            id="field-2001",
        ),
        pytest.param([{"type": "section"}], "must define either `text` or `fields`", id="empty-section"),
        pytest.param(
            [{"type": "actions", "elements": [button("B" * 76, "b")]}],
            "must be less than 76 characters [json-pointer:/blocks/0/elements/0/text/text]",
            id="button-text-76",
        ),
        pytest.param(
            [{"type": "actions", "elements": [button("B", "b", value="v" * 2001)]}],
            "must be less than 2001 characters [json-pointer:/blocks/0/elements/0/value]",
            id="button-value-2001",
        ),
        pytest.param(
            [{"type": "actions", "elements": [button("A", "same"), button("B", "same")]}],
            "duplicate action_id 'same' in this block",
            id="duplicate-action-id",
        ),
        pytest.param(
            [section("a", block_id="b1"), section("b", block_id="b1")],
            "duplicate block_id 'b1'",
            id="duplicate-block-id",
        ),
        pytest.param(
            [{"type": "actions", "elements": [button("A", "a", style="green")]}],
            "must be `primary` or `danger`",
            id="button-style",
        ),
        pytest.param([{"type": "actions", "elements": []}], "must be a non-empty array", id="no-elements"),
        pytest.param(
            [{"type": "actions", "elements": [select([option("o" * 76, "v")])]}],
            "must be less than 76 characters [json-pointer:/blocks/0/elements/0/options/0/text/text]",
            id="option-text-76",
        ),
        pytest.param(
            [{"type": "actions", "elements": [select([option("o", "v" * 151)])]}],
            "must be less than 151 characters [json-pointer:/blocks/0/elements/0/options/0/value]",
            id="option-value-151",
        ),
        pytest.param(
            [{"type": "actions", "elements": [select([option(str(i), str(i)) for i in range(101)])]}],
            "must have between 1 and 100 items",
            id="101-options",
        ),
        pytest.param(
            [{"type": "actions", "elements": [select([option("a", "a")], initial_option=option("b", "b"))]}],
            "initial_option must match one of the element's options",
            id="initial-option-missing",
        ),
        pytest.param([{"type": "sektion", "text": plain("x")}], "unsupported type: sektion", id="unknown-block"),
        pytest.param(
            [{"type": "actions", "elements": [{"type": "buton", "text": plain("x")}]}],
            "unsupported type: buton",
            id="unknown-element",
        ),
        pytest.param([section("x", acton_id="typo")], "unsupported field: acton_id", id="unknown-field"),
        pytest.param(
            [{"type": "section", "text": {"type": "markdown", "text": "x"}}],
            "unsupported type: markdown",
            id="bad-text-type",
        ),
        pytest.param([section("x", block_id="b" * 256)], "must be less than 256 characters", id="block-id-256"),
        pytest.param(
            [{"type": "context", "elements": [{"type": "mrkdwn", "text": "c"}] * 11}],
            "no more than 10 items allowed",
            id="11-context-elements",
        ),
        pytest.param([{"type": "image", "image_url": "https://x/y.png"}], "missing required field", id="image-alt"),
    ],
)
def test_message_rules(blocks, expected):
    problems = validate_message_blocks(blocks)
    assert any(expected in p for p in problems), problems


def test_problems_use_slacks_wording():
    assert validate_message_blocks([section("x" * 3001)]) == [
        "[ERROR] must be less than 3001 characters [json-pointer:/blocks/0/text/text]"
    ]


def test_a_well_formed_modal_passes():
    view = modal(
        section("Pick a target"),
        input_block(select([option("Prod DB", "prod-db")]), block_id="target", dispatch_action=True),
        input_block(
            {"type": "plain_text_input", "action_id": "why", "multiline": True, "max_length": 500},
            block_id="reason",
            optional=True,
            hint=plain("Why"),
        ),
        input_block({"type": "number_input", "action_id": "n", "is_decimal_allowed": False}, block_id="hours"),
        input_block({"type": "datepicker", "action_id": "d", "initial_date": "2030-01-01"}, block_id="day"),
        callback_id="request",
        private_metadata="m" * 3000,
        close=plain("Cancel"),
        notify_on_close=True,
    )
    assert validate_view(view) == []


@pytest.mark.parametrize(
    ("view", "expected"),
    [
        pytest.param(
            modal(title="t" * 25), "must be less than 25 characters [json-pointer:/view/title/text]", id="title-25"
        ),
        pytest.param(
            modal(title=""), "must be more than 0 characters [json-pointer:/view/title/text]", id="empty-title"
        ),
        pytest.param(
            modal(submit="s" * 25), "must be less than 25 characters [json-pointer:/view/submit/text]", id="submit-25"
        ),
        pytest.param(
            modal(input_block({"type": "plain_text_input", "action_id": "a"}), submit=None),
            "a modal with input blocks must have a submit button",
            id="input-without-submit",
        ),
        pytest.param(
            modal(*[section("x")] * 101), "no more than 100 items allowed [json-pointer:/view/blocks]", id="101-blocks"
        ),
        pytest.param(modal(private_metadata="m" * 3001), "must be less than 3001 characters", id="metadata-3001"),
        pytest.param(modal(callback_id="c" * 256), "must be less than 256 characters", id="callback-id-256"),
        pytest.param(
            modal(input_block({"type": "button", "text": plain("b"), "action_id": "b"})),
            "element type button is not allowed here",
            id="button-in-input",
        ),
        pytest.param(
            modal(input_block({"type": "number_input", "action_id": "n"})),
            "missing required field [json-pointer:/view/blocks/0/element/is_decimal_allowed]",
            id="number-needs-decimal-flag",
        ),
        pytest.param(
            modal(input_block({"type": "plain_text_input", "action_id": "a", "max_length": 5000})),
            "must be an integer between 0 and 3000",
            id="max-length",
        ),
        pytest.param(
            modal(input_block({"type": "datepicker", "action_id": "d", "initial_date": "1/2/2030"})),
            "must be in the format YYYY-MM-DD",
            id="date-format",
        ),
        pytest.param({**modal(), "type": "dialog"}, "unsupported type: dialog", id="view-type"),
        pytest.param({**modal(), "colour": "red"}, "unsupported field: colour", id="unknown-view-field"),
        pytest.param(
            modal(section("a", block_id="x"), section("b", block_id="x")),
            "duplicate block_id 'x'",
            id="duplicate-block-id",
        ),
    ],
)
def test_view_rules(view, expected):
    problems = validate_view(view)
    assert any(expected in p for p in problems), problems
