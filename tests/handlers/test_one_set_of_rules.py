"""The Slack modal and the HTTP API accept and refuse the same answers with the same words: both
validate with core/submission.py's model of the flow."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from core.config import load_config
from core.submission import field_errors, submission_model
from handlers.forms import parse_form
from handlers.ids import ActionId, field_block_id
from tests.fakes.strategy import TEST_INTEGRATION_TYPES, TEST_STRATEGY_TYPES
from tests.properties.conftest import property_settings

FLOWS = """\
flows:
  - name: rules
    label: Rules
    approval_channel: C1
    strategy: {type: fake, targets: [{name: t1, label: One}]}
    fields:
      - {name: reason, label: Reason, type: text, required: true}
      - {name: ticket, label: Ticket, type: string}
      - {name: count, label: Count, type: int}
      - {name: duration, label: Duration, type: duration, max: 4h, required: true}
"""

typed = st.one_of(
    st.text(max_size=20),
    st.sampled_from(["", "  ", "42", "-7", "1_000", "٤٢", "9" * 16, "30m", "4h", "5h", "366d", "soon", "0m"]),
    st.text(min_size=495, max_size=505),
    st.text(min_size=2995, max_size=3005),
)


def flow(tmp_path_factory):
    path = tmp_path_factory.mktemp("rules") / "f.yaml"
    path.write_text(FLOWS)
    return load_config(path, strategy_types=TEST_STRATEGY_TYPES, integration_types=TEST_INTEGRATION_TYPES).flow("rules")


@settings(property_settings(), max_examples=min(property_settings().max_examples, 150))
@given(reason=typed, ticket=typed, count=typed, duration=typed)
def test_the_modal_and_the_api_give_the_same_verdict_in_the_same_words(
    tmp_path_factory, reason, ticket, count, duration
):
    rules = flow(tmp_path_factory)
    answers = {"reason": reason, "ticket": ticket, "count": count, "duration": duration}

    def typed_input(value: str) -> dict:
        return {ActionId.VALUE: {"type": "plain_text_input", "value": value}}

    state = {"target": {ActionId.VALUE: {"type": "static_select", "selected_option": {"value": "t1"}}}}
    state.update({field_block_id(name): typed_input(value) for name, value in answers.items()})
    slack = parse_form(rules, state)
    try:
        checked = submission_model(rules).model_validate({"flow": "rules", "target": "t1", "fields": answers})
    except ValidationError as error:
        api_errors = {key.removeprefix("fields."): message for key, message in field_errors(error).items()}
    else:
        api_errors = {}
        assert checked.fields.model_dump() == slack.fields
    assert {key.removeprefix("field:"): message for key, message in slack.errors.items()} == api_errors
