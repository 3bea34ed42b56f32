"""The `audit:` block of the flows file: destinations validated with their line, like the rest of the file."""

from __future__ import annotations

import textwrap
from pathlib import Path

from core.config import check_config, load_config
from core.secrets import SecretRegistry
from strategies.registry import INTEGRATION_TYPES, STRATEGY_TYPES

HEAD = """\
slack: {command: /sym}
integrations:
  aws_main: {type: aws, region: us-east-1}
  okta_main: {type: okta, domain: example.okta.com, api_token: tok}
flows:
  - name: db
    label: DB
    approval_channel: C1
    strategy:
      type: webhook
      url: https://grants.example.com/
      targets: [{name: a, label: A}]
    fields:
      - {name: duration, label: Duration, type: duration, max: 8h, required: true}
"""


def issues(tmp_path: Path, audit: str) -> list[str]:
    path = tmp_path / "flows.yaml"
    path.write_text(HEAD + textwrap.dedent(audit))
    return [str(i) for i in check_config(path, strategy_types=STRATEGY_TYPES, integration_types=INTEGRATION_TYPES)]


def test_a_file_without_an_audit_block_has_no_destinations(tmp_path):
    path = tmp_path / "flows.yaml"
    path.write_text(HEAD)
    config = load_config(path, strategy_types=STRATEGY_TYPES, integration_types=INTEGRATION_TYPES)
    assert config.audit.destinations == []


def test_every_destination_type_loads_with_its_defaults_and_a_derived_name(tmp_path):
    path = tmp_path / "flows.yaml"
    path.write_text(
        HEAD
        + textwrap.dedent(
            """\
            audit:
              destinations:
                - {type: file, path: audit.jsonl}
                - {type: http, url: "https://siem.example.com/in?token=abc", secret: s3cret-hmac}
                - {type: kinesis, integration: aws_main, stream: jitbot-audit}
                - {type: kinesis, integration: aws_main, firehose: jitbot-archive, name: archive}
                - {type: datadog, api_key: dd-key-123, site: datadoghq.eu, tags: {env: prod}}
            """
        )
    )
    registry = SecretRegistry()
    config = load_config(path, strategy_types=STRATEGY_TYPES, integration_types=INTEGRATION_TYPES, secrets=registry)
    assert [d.key for d in config.audit.destinations] == [
        "file:audit.jsonl",
        "http:https://siem.example.com/in",  # the query (a token, perhaps) stays out of the name
        "kinesis:jitbot-audit",
        "archive",
        "datadog:datadoghq.eu/jitbot",
    ]
    datadog = config.audit.destinations[4]
    assert datadog.url == "https://http-intake.logs.datadoghq.eu/api/v2/logs" and datadog.tags == ["env:prod"]
    assert all(d.alert_after.total_seconds() == 900 for d in config.audit.destinations)
    assert registry.scrub("s3cret-hmac dd-key-123") == "*** ***"  # destination secrets are scrubbed everywhere


def test_an_unknown_destination_type_is_an_error_on_its_line(tmp_path):
    assert issues(tmp_path, "audit:\n  destinations:\n    - {type: carrier_pigeon, path: x}\n") == [
        f"{tmp_path / 'flows.yaml'}:17: audit.destinations[0]: unknown or missing destination type "
        "(known: file, http, kinesis, datadog)"
    ]


def test_a_missing_key_is_an_error_on_its_line(tmp_path):
    found = issues(tmp_path, "audit:\n  destinations:\n    - {type: http, url: 'https://x.example.com'}\n")
    assert found == [f"{tmp_path / 'flows.yaml'}:17: audit.destinations[0].secret: required key missing"]


def test_kinesis_needs_an_aws_integration_and_exactly_one_stream(tmp_path):
    found = issues(
        tmp_path,
        """\
        audit:
          destinations:
            - {type: kinesis, integration: nowhere, stream: s}
            - {type: kinesis, integration: okta_main, stream: s}
            - {type: kinesis, integration: aws_main}
        """,
    )
    assert [line.split(": ", 1)[1] for line in found] == [
        "audit.destinations[0]: no integration named 'nowhere' under integrations: (defined: aws_main, okta_main)",
        "audit.destinations[1]: integration 'okta_main' has type 'okta'; kinesis needs type 'aws'",
        "audit.destinations[2]: give exactly one of stream (Kinesis Data Streams) or firehose (a delivery stream)",
    ]


def test_two_destinations_with_one_name_are_refused(tmp_path):
    found = issues(
        tmp_path,
        """\
        audit:
          destinations:
            - {type: file, path: a.jsonl, name: trail}
            - {type: file, path: b.jsonl, name: trail}
        """,
    )
    assert len(found) == 1 and "two destinations are named 'trail'" in found[0]


def test_a_datadog_site_must_be_one_of_datadogs(tmp_path):
    found = issues(tmp_path, "audit:\n  destinations:\n    - {type: datadog, api_key: k, site: datadog.example.com}\n")
    assert len(found) == 1 and "audit.destinations[0].site" in found[0]


def test_a_destination_url_with_a_user_and_password_is_refused_without_echoing_them(tmp_path):
    found = issues(
        tmp_path,
        """\
        audit:
          destinations:
            - {type: http, url: "https://siem:pw-in-url-9931@siem.example.com/in", secret: s3cret-hmac}
        """,
    )
    assert len(found) == 1 and "must not carry a user name or password" in found[0], found
    assert "pw-in-url-9931" not in found[0]
