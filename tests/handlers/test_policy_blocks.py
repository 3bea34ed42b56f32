"""The approval policy's Block Kit: who decides, approvals so far, reminders and the deny modal, within limits."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from core.approvals import clean_reason
from core.config import load_config
from core.models import AccessRequest
from core.policy_ports import Reminder
from handlers import blocks, policy_blocks
from handlers.metadata import DenyMetadata
from sandbox.slack.blocks_validator import validate_message_blocks, validate_view
from tests.fakes.strategy import TEST_INTEGRATION_TYPES, TEST_STRATEGY_TYPES

T0 = datetime(2026, 11, 21, 15, 0, tzinfo=UTC)
USERS = [f"U{i:03d}" for i in range(60)]
FLOW = """\
flows:
  - name: db
    label: Database
    approval_channel: C1
    approvers: {{users: [{users}], usergroups: [S1, S2]}}
    approvals_required: 5
    reminders: {{every: 30m, escalate_after: 1h, escalate_to: {{users: [{users}]}}}}
    strategy: {{type: fake, targets: [{{name: prod, label: Prod}}]}}
    fields:
      - {{name: reason, label: Reason, type: text, required: true}}
      - {{name: duration, label: Duration, type: duration, max: 4h, required: true}}
"""


def the_flow(tmp_path):
    (tmp_path / "f.yaml").write_text(FLOW.format(users=", ".join(USERS)))
    return load_config(
        tmp_path / "f.yaml", strategy_types=TEST_STRATEGY_TYPES, integration_types=TEST_INTEGRATION_TYPES
    ).flow("db")


def pending(**overrides) -> AccessRequest:
    base = dict(
        id="r1",
        flow="db",
        target="prod",
        requester="U_ALICE",
        created_at=T0,
        duration_seconds=3600,
        fields={"reason": "x" * 3000, "duration": "1h"},
        approval_channel="C1",
        message_ts="1.1",
        timeout_at=T0 + timedelta(hours=8),
        grant_to={"identity": "alice@" + "corp" * 100 + ".example", "system": "Okta"},
    )
    return AccessRequest(**{**base, **overrides})


def test_the_pending_message_with_2_of_5_approvals_and_62_deciders_is_within_limits(tmp_path):
    flow = the_flow(tmp_path)
    request = pending(approvals=("U000", "U001"))
    _text, message = blocks.request_message(request, flow, "Prod")
    assert validate_message_blocks(message) == []
    shown = str(message)
    assert "2 of 5 approvals: <@U000>, <@U001>" in shown and "3 more needed" in shown
    assert "and 12 more" in shown  # 60 users + 2 groups: 50 named, the rest counted
    assert "<!subteam^S1>" in shown and "in Okta" in shown and "<!date^" in shown


def test_the_deny_modal_is_a_valid_view_carrying_its_request_and_message(tmp_path):
    view = policy_blocks.deny_modal("r1", "C1", "1.1", "U_ALICE")
    assert validate_view(view) == []
    assert DenyMetadata.decode(view["private_metadata"]) == DenyMetadata("r1", "C1", "1.1")


@given(reason=st.text(max_size=600), waited=st.integers(0, 10**6))
def test_reminders_and_denied_messages_stay_within_limits_whatever_the_reason(reason, waited):
    reminder = Reminder(
        number=3,
        waiting=timedelta(seconds=waited),
        users=tuple(USERS),
        usergroups=("S1",),
        escalated=True,
        escalating_now=True,
        escalate_users=tuple(USERS),
    )
    text = policy_blocks.reminder_text(pending(), reminder)
    assert "and 10 more" in text and "and 11 more" in text
    assert validate_message_blocks([{"type": "section", "text": {"type": "mrkdwn", "text": text}}]) == []
    assert "<!subteam^S1>" in text and text.count("<@") == 99  # 50 mentions per list, the group among them
    denied = pending(status=blocks.S.DENIED, decided_by="U000", decision_reason=clean_reason(reason))
    _text, message = blocks.request_message(denied, None, "Prod")
    assert validate_message_blocks(message) == []
