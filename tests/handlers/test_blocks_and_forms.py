"""Pure builders and the form parser, checked against the emulator's copy of Slack's limits."""

from datetime import UTC, datetime, timedelta

from core.config import load_config
from core.models import AccessRequest
from core.models import RequestStatus as S
from handlers import blocks
from handlers.forms import parse_form
from handlers.ids import ActionId
from sandbox.slack.blocks_validator import validate_message_blocks, validate_view
from tests.fakes.strategy import TEST_INTEGRATION_TYPES, TEST_STRATEGY_TYPES

FLOWS = """\
flows:
  - name: big
    label: Many targets
    approval_channel: C1
    strategy:
      type: fake
      targets:
{targets}
    fields:
      - {{name: reason, label: Reason, type: text, required: true}}
      - {{name: count, label: Count, type: int}}
      - {{name: urgent, label: Urgent, type: bool}}
      - {{name: env, label: Env, type: list, allowed_values: [a, b]}}
      - {{name: duration, label: Duration, type: duration, max: 4h, required: true}}
"""


def flow(tmp_path, targets=3):
    lines = "\n".join(f"        - {{name: t{i}, label: Target {i}}}" for i in range(targets))
    (tmp_path / "f.yaml").write_text(FLOWS.format(targets=lines))
    return load_config(
        tmp_path / "f.yaml", strategy_types=TEST_STRATEGY_TYPES, integration_types=TEST_INTEGRATION_TYPES
    ).flow("big")


def state(target="t1", reason="why", count="", urgent=False, env=None, duration="30m"):
    def value(v):
        return {ActionId.VALUE: v}

    return {
        "target": value({"type": "static_select", "selected_option": {"value": target} if target else None}),
        "field:reason": value({"type": "plain_text_input", "value": reason}),
        "field:count": value({"type": "number_input", "value": count}),
        "field:urgent": value({"type": "checkboxes", "selected_options": [{"value": "true"}] if urgent else []}),
        "field:env": value({"type": "static_select", "selected_option": {"value": env} if env else None}),
        "field:duration": value({"type": "plain_text_input", "value": duration}),
    }


def test_a_form_with_every_field_type_and_150_targets_is_a_view_slack_accepts(tmp_path):
    view = blocks.request_form(flow(tmp_path, targets=150), channel="C9")
    assert validate_view(view) == []
    select = view["blocks"][1]["element"]
    assert "option_groups" in select and sum(len(g["options"]) for g in select["option_groups"]) == 150


def test_the_flow_picker_is_a_view_slack_accepts(tmp_path):
    assert validate_view(blocks.flow_picker([flow(tmp_path)])) == []


def test_parse_form_types_and_inline_errors(tmp_path):
    f = flow(tmp_path)
    ok = parse_form(f, state(count="3", urgent=True, env="b", duration="90m"))
    assert ok.errors == {} and ok.target == "t1" and ok.duration == timedelta(minutes=90)
    assert ok.fields == {"reason": "why", "count": 3, "urgent": True, "env": "b", "duration": "90m"}

    bad = parse_form(f, state(target=None, reason="  ", count="x", duration="5h"))
    assert set(bad.errors) == {"target", "field:reason", "field:count", "field:duration"}
    assert bad.errors["field:duration"] == "At most 4h."
    assert parse_form(f, state(duration="soon")).errors == {"field:duration": "Enter a duration like 30m, 1h or 2d."}


def test_the_request_message_at_every_stage_is_a_message_slack_accepts_even_with_huge_input(tmp_path):
    f = flow(tmp_path)
    now = datetime(2026, 11, 21, 12, tzinfo=UTC)
    request = AccessRequest(
        id="r1",
        flow="big",
        target="t1",
        requester="U1",
        created_at=now,
        duration_seconds=1800,
        fields={"reason": "<script>&" + "x" * 5000, "count": 3, "urgent": True, "env": "a", "duration": "30m"},
        decided_by="U2",
        decision_reason="y" * 4000,
        expires_at=now + timedelta(minutes=30),
        ended_at=now,
        failure_reason="z" * 4000,
    )
    for status in S:
        text, message = blocks.request_message(AccessRequest(**{**request.__dict__, "status": status}), f, "Target 1")
        assert validate_message_blocks(message) == [], status
        has_buttons = any(b["type"] == "actions" for b in message)
        assert has_buttons is (status is S.PENDING)
    text, message = blocks.request_message(request, f, "Target 1")
    assert "&lt;script&gt;&amp;" in message[1]["fields"][2]["text"]


# --- every submitted value is bounded: an out-of-range value is an inline error, never a crash ---------


def test_a_huge_duration_is_an_inline_error_not_a_crash(tmp_path):
    f = flow(tmp_path)
    for typed in ("99999999999d", "999999999999999999999999s", "9" * 5000 + "m", "366d"):
        form = parse_form(f, state(duration=typed))
        assert form.errors == {"field:duration": "At most 4h."}, typed
        assert form.duration is None and "duration" not in form.fields


def test_a_duration_outside_a_select_is_refused_before_it_is_parsed(tmp_path):
    f = flow_with_fields(
        tmp_path, "{name: duration, label: Duration, type: duration, allowed_values: [30m, 1h], required: true}"
    )
    for tampered in ("99999999999d", "2h", "soon"):
        form = parse_form(
            f,
            {
                **state(),
                "field:duration": {ActionId.VALUE: {"type": "static_select", "selected_option": {"value": tampered}}},
            },
        )
        assert form.errors == {"field:duration": "Choose one of the listed durations."}, tampered


def test_text_and_string_fields_are_bounded_to_what_the_modal_lets_a_person_type(tmp_path):
    f = flow_with_fields(
        tmp_path,
        "{name: reason, label: Reason, type: text, required: true}",
        "{name: ticket, label: Ticket, type: string}",
        "{name: duration, label: Duration, type: duration, max: 1h, required: true}",
    )

    def submitted(reason: str, ticket: str):
        return parse_form(f, {**state(), "field:reason": text_input(reason), "field:ticket": text_input(ticket)})

    assert submitted("r" * 3000, "t" * 500).errors == {}
    too_long = submitted("r" * 3001, "t" * 501)
    assert too_long.errors == {"field:reason": "At most 3000 characters.", "field:ticket": "At most 500 characters."}
    assert too_long.fields.get("reason") is None and too_long.fields.get("ticket") is None
    # A megabyte of text is refused the same way, not stored, posted or sent to a hook.
    assert submitted("x" * 1_000_000, "ok").errors == {"field:reason": "At most 3000 characters."}


def test_int_fields_take_whole_numbers_of_at_most_15_digits(tmp_path):
    f = flow(tmp_path)
    for typed, value in (
        ("42", 42),
        (" -7 ", -7),
        ("999999999999999", 999_999_999_999_999),
        ("-999999999999999", -999_999_999_999_999),
    ):
        form = parse_form(f, state(count=typed))
        assert form.errors == {} and form.fields["count"] == value, typed
    for typed in ("1000000000000000", "-99999999999999999999", "9" * 5000, "1e30", "1_000", "٤٢", "4.5"):
        form = parse_form(f, state(count=typed))
        assert set(form.errors) == {"field:count"}, typed
        assert "count" not in form.fields


def test_a_tampered_payload_with_values_of_the_wrong_shape_is_an_inline_error(tmp_path):
    f = flow(tmp_path)
    odd = {
        "field:reason": {ActionId.VALUE: {"type": "plain_text_input", "value": ["not", "text"]}},
        "field:count": {ActionId.VALUE: {"type": "number_input", "value": 12}},
        "field:env": {ActionId.VALUE: {"type": "static_select", "selected_option": "a"}},
        "field:duration": {ActionId.VALUE: {"type": "plain_text_input", "value": {"seconds": 60}}},
        "target": "t1",
    }
    form = parse_form(f, {**state(), **odd})
    assert set(form.errors) == {"target", "field:reason", "field:count", "field:env", "field:duration"}


def flow_with_fields(tmp_path, *fields: str):
    body = "\n".join(f"      - {spec}" for spec in fields)
    (tmp_path / "g.yaml").write_text(
        "flows:\n  - name: small\n    label: Small\n    approval_channel: C1\n    strategy:\n      type: fake\n"
        f"      targets:\n        - {{name: t1, label: Target 1}}\n    fields:\n{body}\n"
    )
    return load_config(
        tmp_path / "g.yaml", strategy_types=TEST_STRATEGY_TYPES, integration_types=TEST_INTEGRATION_TYPES
    ).flow("small")


def text_input(value: str) -> dict:
    return {ActionId.VALUE: {"type": "plain_text_input", "value": value}}


def test_a_flows_form_model_is_built_once_and_checks_every_form_the_same(tmp_path):
    from core.submission import FieldModels

    f, models = flow(tmp_path), FieldModels()
    first = parse_form(f, state(count="3", urgent=True, env="b", duration="90m"), models=models)
    bad = parse_form(f, state(target=None, reason="  ", count="x", duration="5h"), models=models)
    assert first == parse_form(f, state(count="3", urgent=True, env="b", duration="90m"))
    assert bad == parse_form(f, state(target=None, reason="  ", count="x", duration="5h"))
    assert models.of(f) is models.of(f)
    # A flow of the same name loaded again (another object) gets its own model, never a stale one.
    assert models.of(flow(tmp_path)) is not models.of(f)
