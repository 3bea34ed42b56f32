"""`reconcile:` on a flow, as `bot.py validate` reads it: every mistake named at its line."""

from __future__ import annotations

import textwrap
from datetime import timedelta
from pathlib import Path

import pytest

from core.config import check_config, load_config
from strategies.registry import INTEGRATION_TYPES, STRATEGY_TYPES

# Line numbers below are those of the okta file (line 1 is `integrations:`; `reconcile:` is line 19).
FLOWS = """\
integrations:
  okta:
    type: okta
    domain: example.okta.com
    api_token: ${{env:OKTA_TOKEN}}
flows:
  - name: okta_prod
    label: Okta Prod
    approval_channel: C0APPROVALS
    strategy:
      type: {strategy_type}
      {strategy_key}
      targets:
        - name: prod
          label: Prod
          group_id: 00g1
          url_unused: x
    fields:
      - {{name: duration, label: Duration, type: duration, allowed_values: [1h], required: true}}
    reconcile:
{reconcile}
"""


def write(tmp_path: Path, reconcile: str, *, strategy_type: str = "okta") -> Path:
    key = "integration: okta" if strategy_type == "okta" else "url: https://hooks.example.com/grant"
    text = FLOWS.format(strategy_type=strategy_type, strategy_key=key, reconcile=textwrap.indent(reconcile, "      "))
    if strategy_type == "okta":
        text = text.replace("          url_unused: x\n", "")
    else:
        text = text.replace("          group_id: 00g1\n          url_unused: x\n", "")
    path = tmp_path / "flows.yaml"
    path.write_text(text)
    return path


def located(path: Path) -> list[tuple[int | None, str, str]]:
    return [
        (i.line, i.path, i.message)
        for i in check_config(path, strategy_types=STRATEGY_TYPES, integration_types=INTEGRATION_TYPES)
    ]


def test_a_reconcile_block_loads_with_its_defaults(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OKTA_TOKEN", "00token")
    path = write(tmp_path, "every: 1h\nexempt: [svc-deploy@example.com]\n")
    assert located(path) == []
    flow = load_config(path, strategy_types=STRATEGY_TYPES, integration_types=INTEGRATION_TYPES).flow("okta_prod")
    assert flow.reconcile is not None
    assert flow.reconcile.every == timedelta(hours=1)
    assert flow.reconcile.action == "alert"
    assert flow.reconcile.exempt == ["svc-deploy@example.com"]


@pytest.mark.parametrize(
    ("reconcile", "line", "path", "words"),
    [
        ("action: revoke\n", 19, "flows[0].reconcile.every", "required key missing"),
        ("every: 1h\naction: delete\n", 21, "flows[0].reconcile.action", "'alert' or 'revoke'"),
        ("every: 30s\n", 20, "flows[0].reconcile.every", "at least 5m"),
        ("every: soon\n", 20, "flows[0].reconcile.every", "not a duration"),
        ("every: 1h\nexempt: ['']\n", 21, "flows[0].reconcile.exempt[0]", "must not be empty"),
        ("every: 1h\nalert_channel: C1\n", 21, "flows[0].reconcile.alert_channel", "unknown key"),
    ],
)
def test_a_bad_reconcile_block_is_an_error_at_its_line(
    tmp_path: Path, reconcile: str, line: int, path: str, words: str
) -> None:
    found = located(write(tmp_path, reconcile))
    assert len(found) == 1, found
    assert found[0][:2] == (line, path)
    assert words in found[0][2]


def test_a_strategy_that_cannot_list_holders_cannot_be_reconciled(tmp_path: Path) -> None:
    found = located(write(tmp_path, "every: 1h\n", strategy_type="webhook"))
    assert len(found) == 1, found
    line, path, message = found[0]
    assert (line, path) == (18, "flows[0].reconcile")  # the webhook file is one line shorter
    assert "strategy type 'webhook' cannot list who holds a target" in message
    assert "aptible, aws_iam, aws_sso, okta" in message


def test_an_approval_only_flow_cannot_be_reconciled_it_has_no_system_to_list(tmp_path: Path) -> None:
    path = tmp_path / "flows.yaml"
    path.write_text(
        textwrap.dedent(
            """\
            flows:
              - name: deploy_gate
                label: Deploy gate
                approval_channel: C0APPROVALS
                fields:
                  - {name: duration, label: Duration, type: duration, allowed_values: [1h], required: true}
                reconcile:
                  every: 1h
            """
        )
    )
    found = located(path)
    assert len(found) == 1, found
    line, where, message = found[0]
    assert (line, where) == (7, "flows[0].reconcile")
    assert "approval-only" in message
