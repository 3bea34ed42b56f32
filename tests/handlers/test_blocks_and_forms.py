"""Pure builders and the form parser, checked against the emulator's copy of Slack's limits."""

from datetime import datetime, timedelta, timezone

from core.config import load_config
from core.models import AccessRequest, RequestStatus as S
from handlers import blocks
from handlers.forms import parse_form
from handlers.ids import ActionId
from tests.fakes.slack_emulator.blocks_validator import validate_message_blocks, validate_view
from tests.fakes.strategy import TEST_STRATEGY_TYPES

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
    return load_config(tmp_path / "f.yaml", strategy_types=TEST_STRATEGY_TYPES).flow("big")


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
    now = datetime(2026, 11, 21, 12, tzinfo=timezone.utc)
    request = AccessRequest(
        id="r1", flow="big", target="t1", requester="U1", created_at=now, duration_seconds=1800,
        fields={"reason": "<script>&" + "x" * 5000, "count": 3, "urgent": True, "env": "a", "duration": "30m"},
        decided_by="U2", decision_reason="y" * 4000, expires_at=now + timedelta(minutes=30), ended_at=now,
        failure_reason="z" * 4000,
    )
    for status in S:
        text, message = blocks.request_message(AccessRequest(**{**request.__dict__, "status": status}), f, "Target 1")
        assert validate_message_blocks(message) == [], status
        has_buttons = any(b["type"] == "actions" for b in message)
        assert has_buttons is (status is S.PENDING)
    text, message = blocks.request_message(request, f, "Target 1")
    assert "&lt;script&gt;&amp;" in message[1]["fields"][2]["text"]
