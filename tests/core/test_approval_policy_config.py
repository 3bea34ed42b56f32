"""The approval-policy keys of the flows file: each mistake is a `validate` error at its own line."""

from __future__ import annotations

from datetime import timedelta

import pytest

from core.config import check_config
from tests.core.test_config import INTEGRATIONS, STRATEGIES, VALID, edit, load, located, write

POLICY_AT = "    request_timeout: 24h\n"
FIRST = VALID.count("\n", 0, VALID.index(POLICY_AT)) + 2  # the line of the first key inserted after it


def with_policy(text: str, base: str = VALID) -> str:
    return edit(POLICY_AT, POLICY_AT + text, base)


@pytest.fixture(autouse=True)
def _token(monkeypatch):
    monkeypatch.setenv("JITBOT_TEST_TOKEN", "t0ken")


def test_the_policy_keys_load_with_their_defaults(tmp_path):
    flow = load(write(tmp_path, VALID)).flows[0]
    assert flow.approvals_required == 1 and flow.requesters is None and flow.reminders is None
    assert not flow.approval_only

    text = with_policy(
        "    approvals_required: 2\n"
        "    requesters: {users: [U0ALICE], usergroups: [S0ONCALL]}\n"
        "    reminders:\n"
        "      every: 30m\n"
        "      escalate_after: 2h\n"
        "      escalate_to: {users: [U0BACKUP]}\n"
    )
    flow = load(write(tmp_path, text)).flows[0]
    assert flow.approvals_required == 2
    assert flow.requesters is not None and flow.requesters.mentions == ["<@U0ALICE>", "<!subteam^S0ONCALL>"]
    assert flow.reminders is not None and flow.reminders.escalate_after == timedelta(hours=2)


def test_approvals_required_zero_is_an_error_at_its_line(tmp_path):
    path = write(tmp_path, with_policy("    approvals_required: 0\n"))
    assert located(path) == [(FIRST, "flows[0].approvals_required", "must be greater than or equal to 1")]


def test_more_required_approvals_than_static_approvers_is_an_error_at_its_line(tmp_path):
    text = edit("      usergroups: [S0SECOPS]\n", "", with_policy("    approvals_required: 3\n"))
    ((line, where, message),) = located(write(tmp_path, text))
    assert (line, where) == (FIRST - 1, "flows[0].approvals_required")  # one line fewer above it
    assert "needs 3 distinct approvers" in message and "only 1 user" in message


def test_a_usergroup_among_the_approvers_leaves_the_count_to_the_start_check(tmp_path):
    load(write(tmp_path, with_policy("    approvals_required: 3\n")))  # the group's size is only known in Slack


def test_a_get_approvers_hook_leaves_the_count_to_each_request(tmp_path):
    (tmp_path / "hooks.py").write_text("def get_approvers(evt):\n    return ['U1', 'U2', 'U3']\n")
    text = edit("      usergroups: [S0SECOPS]\n", "", with_policy("    approvals_required: 3\n    hooks: hooks.py\n"))
    load(write(tmp_path, text))


def test_escalate_after_shorter_than_every_is_an_error_at_its_line(tmp_path):
    text = with_policy(
        "    reminders:\n      every: 1h\n      escalate_after: 30m\n      escalate_to: {users: [U0BACKUP]}\n"
    )
    ((line, where, message),) = located(write(tmp_path, text))
    assert (line, where) == (FIRST + 2, "flows[0].reminders.escalate_after")
    assert "shorter than every" in message


@pytest.mark.parametrize(
    ("policy", "where", "words"),
    [
        ("    reminders:\n      every: 30s\n", "flows[0].reminders.every", "at least 1m"),
        ("    reminders:\n      every: 30m\n      escalate_after: 1h\n", "flows[0].reminders.escalate_to", "required"),
        ("    requesters: {}\n", "flows[0].requesters", "lists no users or usergroups"),
        ("    requesters:\n", "flows[0].requesters", "is empty"),
        ("    requesters: {users: U0ALICE}\n", "flows[0].requesters.users", "list"),
        ("    requesters: {people: [U0ALICE]}\n", "flows[0].requesters.people", "unknown key"),
    ],
)
def test_the_shape_of_requesters_and_reminders_is_checked(tmp_path, policy, where, words):
    found = located(write(tmp_path, with_policy(policy)))
    assert any(path == where and words in message for _line, path, message in found), found


def test_validate_reports_the_same_issues_without_resolving_secrets(tmp_path):
    path = write(tmp_path, with_policy("    approvals_required: 0\n"))
    found = check_config(path, strategy_types=STRATEGIES, integration_types=INTEGRATIONS)
    assert [(i.line, i.path) for i in found] == [(FIRST, "flows[0].approvals_required")]


def test_a_flow_without_a_strategy_is_approval_only_with_one_target_named_after_it(tmp_path):
    start = VALID.index("    strategy:\n")
    end = VALID.index("    fields:\n")
    text = VALID[:start] + VALID[end:]
    flow = load(write(tmp_path, text)).flows[0]
    assert flow.approval_only and [(t.name, t.label) for t in flow.targets] == [("db_access", "Database Access")]
    assert flow.grant_spec("db_access") == {
        "approval_only": True,
        "target": {"name": "db_access", "label": "Database Access"},
    }
