"""The form's rules (core/submission.py), shared by the Slack modal and the HTTP API: whatever value
arrives, it is either accepted within its bounds or refused with a sentence, never an exception."""

from __future__ import annotations

from datetime import timedelta

from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from core.config import load_config
from core.submission import (
    MAX_INT,
    MAX_STRING_LENGTH,
    MAX_TEXT_LENGTH,
    duration_in,
    field_errors,
    submission_model,
)
from tests.fakes.strategy import TEST_INTEGRATION_TYPES, TEST_STRATEGY_TYPES
from tests.properties.conftest import property_settings

FLOWS = """\
flows:
  - name: big
    label: Big
    approval_channel: C1
    strategy: {type: fake, targets: [{name: t1, label: One}, {name: t2, label: Two}]}
    fields:
      - {name: reason, label: Reason, type: text, required: true}
      - {name: ticket, label: Ticket, type: string}
      - {name: count, label: Count, type: int}
      - {name: urgent, label: Urgent, type: bool}
      - {name: env, label: Env, type: list, allowed_values: [a, b]}
      - {name: duration, label: Duration, type: duration, max: 4h, default: 1h}
"""

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=4000),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=5,
)


def flow(tmp_path_factory):
    path = tmp_path_factory.mktemp("flows") / "f.yaml"
    path.write_text(FLOWS)
    return load_config(path, strategy_types=TEST_STRATEGY_TYPES, integration_types=TEST_INTEGRATION_TYPES).flow("big")


def test_a_valid_request_takes_the_defaults_and_trims_text(tmp_path_factory):
    model = submission_model(flow(tmp_path_factory))
    checked = model.model_validate({"flow": "big", "target": "t2", "fields": {"reason": "  why  ", "count": "42"}})
    assert checked.fields.model_dump() == {
        "reason": "why",
        "ticket": None,
        "count": 42,
        "urgent": False,
        "env": None,
        "duration": "1h",
    }


def test_refusals_name_each_field_in_the_forms_words(tmp_path_factory):
    model = submission_model(flow(tmp_path_factory))
    body = {
        "flow": "big",
        "target": "t9",
        "fields": {"reason": "", "count": 10**16, "env": "c", "duration": "5h", "extra": 1},
    }
    try:
        model.model_validate(body)
    except ValidationError as error:
        errors = field_errors(error)
    assert errors == {
        "target": "Choose one of the listed targets.",
        "fields.reason": "This field is required.",
        "fields.count": "Enter a whole number of at most 15 digits.",
        "fields.env": "Choose one of the listed values.",
        "fields.duration": "At most 4h.",
        "fields.extra": "Not a field of this form.",
    }


@settings(property_settings(), max_examples=min(property_settings().max_examples, 150))
@given(values=st.dictionaries(st.sampled_from(["reason", "ticket", "count", "urgent", "env", "duration"]), json_values))
def test_any_value_is_accepted_within_bounds_or_refused_with_a_sentence(tmp_path_factory, values):
    big = flow(tmp_path_factory)
    try:
        fields = submission_model(big).model_validate({"flow": "big", "target": "t1", "fields": values}).fields
    except ValidationError as error:
        assert all(isinstance(m, str) and m for m in field_errors(error).values())
        return
    dumped = fields.model_dump()
    assert len(dumped["reason"]) <= MAX_TEXT_LENGTH and dumped["reason"]
    assert dumped["ticket"] is None or len(dumped["ticket"]) <= MAX_STRING_LENGTH
    assert dumped["count"] is None or abs(dumped["count"]) <= MAX_INT
    assert isinstance(dumped["urgent"], bool) and dumped["env"] in (None, "a", "b")
    assert timedelta(0) < duration_in(big, dumped) <= timedelta(hours=4)
