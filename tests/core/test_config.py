from __future__ import annotations

import textwrap
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Literal

import pytest
import yaml
from pydantic import Field

from core.config import check_config, load_config
from core.config_lines import ConfigIssue
from core.config_models import JitConfig
from core.errors import ConfigError
from core.models import Subject
from core.schema import IntegrationConfig, SecretStr, StrategyConfig, TargetConfig
from core.secrets import Secret, SecretRegistry
from core.strategy import GrantContext
from core.targets import as_target, target_settings
from tests.fakes.strategy import TEST_STRATEGY_TYPES, FakeStrategy, FakeStrategyConfig
from tests.strategies.contract import Harness, run_contract

REPO = Path(__file__).resolve().parents[2]


class FakeApiConfig(IntegrationConfig):
    type: Literal["fake_api"]
    base_url: str
    api_token: SecretStr


class FakeApiIntegration:
    config_model = FakeApiConfig


class OtherApiConfig(IntegrationConfig):
    type: Literal["other_api"]


class OtherApiIntegration:
    config_model = OtherApiConfig


class LockedTarget(TargetConfig):
    door: str
    pin: SecretStr


class LockedConfig(StrategyConfig):
    type: Literal["locked"]
    integration: str
    targets: Annotated[list[LockedTarget], Field(min_length=1)]


class LockedStrategy(FakeStrategy):
    config_model = LockedConfig
    integration_type = "fake_api"


STRATEGIES = {**TEST_STRATEGY_TYPES, "locked": LockedStrategy}
INTEGRATIONS = {"fake_api": FakeApiIntegration, "other_api": OtherApiIntegration}
KNOWN = ", ".join(sorted(STRATEGIES))  # the production registry grows; fake and locked are always there

# Line numbers below are those of this text (line 1 is `slack:`).
VALID = """\
slack:
  command: /sym
  alerts_channel: C0ALERTS
integrations:
  api:
    type: fake_api
    base_url: http://127.0.0.1:9/
    api_token: ${env:JITBOT_TEST_TOKEN}
flows:
  - name: db_access
    label: Database Access
    approval_channel: C0APPROVALS
    approvers:
      users: [U0ADMIN1]
      usergroups: [S0SECOPS]
    strategy:
      type: fake
      targets:
        - name: prod_admin
          label: Prod Admin
          settings: {database: prod, role: admin}
        - name: staging
          label: Staging
    fields:
      - name: reason
        label: Why do you need access?
        type: string
        required: true
      - name: duration
        label: Duration
        type: duration
        allowed_values: [10s, 30m, 1h]
        required: true
    request_timeout: 24h
"""


def write(tmp_path: Path, text: str, name: str = "flows.yaml") -> Path:
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


def load(path: Path, **kwargs) -> JitConfig:
    return load_config(path, strategy_types=STRATEGIES, integration_types=INTEGRATIONS, **kwargs)


def issues(path: Path, **kwargs) -> list[ConfigIssue]:
    with pytest.raises(ConfigError) as caught:
        load(path, **kwargs)
    return caught.value.issues


def located(path: Path, **kwargs) -> list[tuple[int | None, str, str]]:
    return [(i.line, i.path, i.message) for i in issues(path, **kwargs)]


def edit(old: str, new: str, text: str = VALID) -> str:
    assert old in text, old
    return text.replace(old, new, 1)


# --- a valid file ------------------------------------------------------------------------------


def test_valid_file_loads_with_defaults_and_helpers(tmp_path):
    path = write(tmp_path, VALID)
    config = load(path)
    assert config.path == path
    assert config.slack.command == "/sym" and config.slack.alerts_channel == "C0ALERTS"
    flow = config.flow("db_access")
    assert isinstance(flow.strategy, FakeStrategyConfig)
    assert flow.approvers.users == ["U0ADMIN1"] and flow.approvers.usergroups == ["S0SECOPS"]
    assert flow.allow_self_approval is False
    assert flow.request_timeout == timedelta(hours=24)
    assert flow.hook_timeout == timedelta(seconds=5)
    assert flow.hooks is None and flow.hooks_path is None
    assert [t.name for t in flow.targets] == ["prod_admin", "staging"]
    assert flow.target("prod_admin").label == "Prod Admin"
    assert flow.duration_field.name == "duration"
    assert flow.duration_field.duration_values == [timedelta(seconds=10), timedelta(minutes=30), timedelta(hours=1)]
    assert flow.field("reason").required is True
    assert isinstance(config.integrations["api"], FakeApiConfig)
    with pytest.raises(KeyError):
        config.flow("nope")
    with pytest.raises(KeyError):
        flow.target("nope")


def test_target_settings_and_domain_target(tmp_path):
    config = load(write(tmp_path, VALID))
    target = config.flow("db_access").target("prod_admin")
    assert target_settings(target) == {"database": "prod", "role": "admin"}
    domain = as_target(target)
    assert (domain.name, domain.label, domain.settings) == ("prod_admin", "Prod Admin", target_settings(target))


def test_target_settings_keeps_secret_objects(tmp_path, monkeypatch):
    monkeypatch.setenv("JITBOT_TEST_PIN", "pin-4821-secret")
    text = edit("      type: fake\n", "      type: locked\n      integration: api\n")
    text = text.replace(
        "          settings: {database: prod, role: admin}\n",
        "          door: front\n          pin: ${env:JITBOT_TEST_PIN}\n",
    ).replace("          label: Staging\n", "          label: Staging\n          door: back\n          pin: x1234\n")
    monkeypatch.setenv("JITBOT_TEST_TOKEN", "token-123456")
    config = load(write(tmp_path, text), resolve_secrets=True)
    settings = target_settings(config.flow("db_access").target("prod_admin"))
    assert settings["door"] == "front"
    assert isinstance(settings["pin"], Secret) and settings["pin"].reveal() == "pin-4821-secret"
    assert "pin-4821-secret" not in repr(config) and "pin-4821-secret" not in str(config)


def test_model_dump_shows_strategy_keys_and_redacts_secrets(tmp_path, monkeypatch):
    monkeypatch.setenv("JITBOT_TEST_TOKEN", "token-abcdef")
    config = load(write(tmp_path, VALID), resolve_secrets=True)
    dumped = config.model_dump(mode="json")
    assert dumped["flows"][0]["strategy"]["targets"][0]["settings"] == {"database": "prod", "role": "admin"}
    assert dumped["integrations"]["api"]["api_token"] == "***"
    assert dumped["flows"][0]["request_timeout"] == "1d"


# --- structural errors, each with its line and key path ------------------------------------


def test_unknown_key_names_the_key(tmp_path):
    path = write(tmp_path, edit("          label: Staging\n", "          labell: Staging\n"))
    assert located(path) == [
        (22, "flows[0].strategy.targets[1].label", "required key missing"),
        (23, "flows[0].strategy.targets[1].labell", "unknown key 'labell'"),
    ]


def test_issue_str_is_file_line_path_message(tmp_path):
    path = write(tmp_path, edit("      type: fake\n", "      type: aws-sso\n"))
    (issue,) = issues(path)
    assert str(issue) == f"{path}:17: flows[0].strategy.type: unknown type 'aws-sso' (known: {KNOWN})"


def test_unknown_and_missing_strategy_type(tmp_path):
    path = write(tmp_path, edit("      type: fake\n", "      type: aws-sso\n"))
    with pytest.raises(ConfigError) as caught:
        load_config(
            path, strategy_types={"fake": FakeStrategy, "webhook": FakeStrategy}, integration_types=INTEGRATIONS
        )
    assert [i.message for i in caught.value.issues] == ["unknown type 'aws-sso' (known: fake, webhook)"]
    path = write(tmp_path, edit("      type: fake\n", "      type: [fake]\n"))
    assert located(path) == [(17, "flows[0].strategy.type", f"must be a type name (known: {KNOWN})")]
    path = write(tmp_path, edit("      type: fake\n", ""))
    assert located(path) == [(16, "flows[0].strategy.type", "required key missing")]


def test_missing_key_is_reported_at_the_parent_mapping(tmp_path):
    path = write(tmp_path, edit("    approval_channel: C0APPROVALS\n", ""))
    assert located(path) == [(10, "flows[0].approval_channel", "required key missing")]


def test_list_field_without_values(tmp_path):
    text = edit(
        "      - name: duration\n",
        "      - name: team\n        label: Team\n        type: list\n      - name: duration\n",
    )
    assert located(write(tmp_path, text)) == [
        (29, "flows[0].fields[1].allowed_values", "a list field needs allowed_values")
    ]


@pytest.mark.parametrize(
    "replacement, expected",
    [
        pytest.param(
            "",
            (29, "flows[0].fields[1].allowed_values", "a duration field needs allowed_values or max"),
            id="neither-values-nor-max",
        ),
        pytest.param(
            "        allowed_values: [10s, 30m, 1h]\n        max: 1h\n        hint: pick one\n", None, id="max-ok"
        ),
        pytest.param(
            "        allowed_values: [10s, soon, 1h]\n",
            (32, "flows[0].fields[1].allowed_values[1]", "'soon' is not a duration like 30s, 10m, 1h or 2d"),
            id="unparseable",
        ),
        pytest.param(
            "        allowed_values: [10s, 30m, 2h]\n        max: 1h\n",
            (32, "flows[0].fields[1].allowed_values[2]", "'2h' is longer than max (1h)"),
            id="over-max",
        ),
        pytest.param(
            "        allowed_values: [10s, 10s]\n",
            (32, "flows[0].fields[1].allowed_values[1]", "duplicate value '10s'"),
            id="duplicate-value",
        ),
        pytest.param(
            "        allowed_values: []\n",
            (32, "flows[0].fields[1].allowed_values", "must not be empty"),
            id="empty-values",
        ),
        pytest.param(
            "        max: soon\n",
            (32, "flows[0].fields[1].max", "'soon' is not a duration like 30s, 10m, 1h or 2d"),
            id="bad-max",
        ),
        pytest.param(
            "        allowed_values: [10s, 30m, 1h]\n        default: 2h\n",
            (33, "flows[0].fields[1].default", "must be one of allowed_values"),
            id="default-not-allowed",
        ),
    ],
)
def test_duration_field_rules(tmp_path, replacement, expected):
    path = write(tmp_path, edit("        allowed_values: [10s, 30m, 1h]\n", replacement))
    if expected is None:
        assert load(path).flow("db_access").duration_field.max == timedelta(hours=1)
    else:
        assert located(path) == [expected]


def test_values_and_max_only_on_fields_that_take_them(tmp_path):
    text = edit(
        "        required: true\n      - name: duration\n",
        "        required: true\n        allowed_values: [a, b]\n        max: 1h\n        default: 3\n"
        "      - name: duration\n",
    )
    assert located(write(tmp_path, text)) == [
        (29, "flows[0].fields[0].allowed_values", "only list and duration fields take allowed_values"),
        (30, "flows[0].fields[0].max", "only duration fields take max"),
        (31, "flows[0].fields[0].default", "must be a string for a string field"),
    ]


def test_value_matching_no_member_of_a_union_is_one_issue(tmp_path):
    text = edit(
        "        type: string\n        required: true\n",
        "        type: string\n        required: true\n        default: [a]\n",
    )
    assert located(write(tmp_path, text)) == [
        (29, "flows[0].fields[0].default", "must be a string, a whole number or true or false")
    ]


def test_field_name_target_is_reserved(tmp_path):
    path = write(tmp_path, edit("      - name: reason\n", "      - name: target\n"))
    assert located(path) == [(25, "flows[0].fields[0].name", "field name 'target' is reserved for the target picker")]


def test_exactly_one_duration_field(tmp_path):
    none = edit("        type: duration\n        allowed_values: [10s, 30m, 1h]\n", "        type: string\n")
    assert located(write(tmp_path, none)) == [
        (24, "flows[0].fields", "needs exactly one field of type duration (the request's length); found none")
    ]
    two = edit("        type: string\n", "        type: duration\n        max: 1h\n")
    assert located(write(tmp_path, two)) == [
        (
            24,
            "flows[0].fields",
            "needs exactly one field of type duration (the request's length); found reason, duration",
        )
    ]


def test_duration_field_must_be_required_or_have_a_default(tmp_path):
    text = VALID.replace(
        "        allowed_values: [10s, 30m, 1h]\n        required: true\n", "        allowed_values: [10s, 30m, 1h]\n"
    )
    assert located(write(tmp_path, text)) == [
        (29, "flows[0].fields[1].required", "the duration field must be required: true or have a default")
    ]
    with_default = text.replace("[10s, 30m, 1h]\n", "[10s, 30m, 1h]\n        default: 30m\n")
    assert load(write(tmp_path, with_default)).flow("db_access").duration_field.default == "30m"


def test_duplicate_names_of_flows_targets_and_fields(tmp_path):
    text = edit("        - name: staging\n", "        - name: prod_admin\n")
    text = edit(
        "      - name: duration\n",
        "      - name: reason\n        label: Again\n        type: text\n      - name: duration\n",
        text,
    )
    text += textwrap.indent(VALID.split("flows:\n")[1], "")
    config_lines = text.splitlines()
    second_flow = config_lines.index("  - name: db_access", 10) + 1
    assert located(write(tmp_path, text))[:3] == [
        (
            22,
            "flows[0].strategy.targets[1].name",
            "duplicate target name 'prod_admin' (also flows[0].strategy.targets[0])",
        ),
        (29, "flows[0].fields[1].name", "duplicate field name 'reason' (also flows[0].fields[0])"),
        (second_flow, "flows[1].name", "duplicate flow name 'db_access' (also flows[0])"),
    ]


def test_empty_approvers_are_refused(tmp_path):
    blank = edit("    approvers:\n      users: [U0ADMIN1]\n      usergroups: [S0SECOPS]\n", "    approvers:\n")
    (issue,) = issues(write(tmp_path, blank))
    assert (issue.line, issue.path) == (13, "flows[0].approvers") and "remove the key" in issue.message
    empty = edit("      users: [U0ADMIN1]\n      usergroups: [S0SECOPS]\n", "      users: []\n")
    (issue,) = issues(write(tmp_path, empty))
    assert (issue.line, issue.path) == (13, "flows[0].approvers") and "no users or usergroups" in issue.message


def test_type_errors_read_plainly(tmp_path):
    text = edit("    label: Database Access\n", "    label: [Database]\n")
    text = edit("    request_timeout: 24h\n", "    request_timeout: soon\n    allow_self_approval: maybe\n", text)
    text = edit("  command: /sym\n", "  command: sym\n", text)
    assert located(write(tmp_path, text)) == [
        (2, "slack.command", "must match the pattern ^/[a-z0-9_-]{1,31}$"),
        (11, "flows[0].label", "must be a string"),
        (34, "flows[0].request_timeout", "'soon' is not a duration like 30s, 10m, 1h or 2d"),
        (35, "flows[0].allow_self_approval", "must be true or false"),
    ]


def test_no_flows(tmp_path):
    assert located(write(tmp_path, "slack: {command: /sym}\nflows: []\n")) == [(2, "flows", "must not be empty")]
    assert located(write(tmp_path, "slack: {command: /sym}\n")) == [(1, "flows", "required key missing")]


# --- integrations and the strategy -> integration cross check ------------------------------


def locked(text: str = VALID, integration: str = "api") -> str:
    text = edit("      type: fake\n", f"      type: locked\n      integration: {integration}\n", text)
    return text.replace(
        "          settings: {database: prod, role: admin}\n", "          door: front\n          pin: p1234\n"
    ).replace("          label: Staging\n", "          label: Staging\n          door: back\n          pin: p5678\n")


def test_strategy_integration_of_the_right_type(tmp_path):
    assert load(write(tmp_path, locked())).flow("db_access").strategy.integration == "api"


def test_strategy_integration_that_does_not_exist(tmp_path):
    assert located(write(tmp_path, locked(integration="okta_main"))) == [
        (18, "flows[0].strategy.integration", "no integration named 'okta_main' under integrations: (defined: api)")
    ]


def test_strategy_integration_of_the_wrong_type(tmp_path):
    text = edit(
        "  api:\n    type: fake_api\n    base_url: http://127.0.0.1:9/\n    api_token: ${env:JITBOT_TEST_TOKEN}\n",
        "  api:\n    type: other_api\n",
        locked(),
    )
    assert located(write(tmp_path, text)) == [
        (
            16,
            "flows[0].strategy.integration",
            "integration 'api' has type 'other_api'; this strategy needs type 'fake_api'",
        )
    ]


def test_integration_errors(tmp_path):
    text = edit("    type: fake_api\n", "    type: fake-api\n")
    text = edit(
        "integrations:\n",
        "integrations:\n  Bad-Name:\n    type: other_api\n  other:\n    type: other_api\n    extra: 1\n",
        text,
    )
    assert located(write(tmp_path, text)) == [
        (
            5,
            "integrations.Bad-Name",
            "'Bad-Name' is not a valid name: must contain only lowercase letters, digits and _",
        ),
        (9, "integrations.other.extra", "unknown key 'extra'"),
        (11, "integrations.api.type", "unknown type 'fake-api' (known: fake_api, other_api)"),
    ]


def test_fake_integration_reference_is_checked_for_existence(tmp_path):
    text = edit("      type: fake\n", "      type: fake\n      integration: nowhere\n")
    assert located(write(tmp_path, text)) == [
        (18, "flows[0].strategy.integration", "no integration named 'nowhere' under integrations: (defined: api)")
    ]


# --- hooks ---------------------------------------------------------------------------------


def test_hooks_path_is_resolved_relative_to_the_flows_file(tmp_path):
    (tmp_path / "conf" / "hooks").mkdir(parents=True)
    (tmp_path / "conf" / "hooks" / "db.py").write_text("def on_request(evt):\n    return None\n")
    path = write(tmp_path, VALID + "    hooks: hooks/db.py\n    hook_timeout: 2s\n", "conf/flows.yaml")
    flow = load(path).flow("db_access")
    assert flow.hooks == "hooks/db.py"
    assert flow.hooks_path == (tmp_path / "conf" / "hooks" / "db.py").resolve() and flow.hooks_path.is_absolute()
    assert flow.hook_timeout == timedelta(seconds=2)


def test_missing_hooks_file_is_reported_at_the_hooks_key(tmp_path):
    path = write(tmp_path, VALID + "    hooks: hooks/missing.py\n")
    ((line, key, message),) = located(path)
    assert (line, key) == (35, "flows[0].hooks")
    assert message.startswith("hooks file 'hooks/missing.py' does not exist")


def test_hooks_file_with_a_syntax_error_is_reported_at_its_own_line(tmp_path):
    (tmp_path / "bad.py").write_text("import os\n\ndef on_request(evt)\n    pass\n")
    (issue,) = issues(write(tmp_path, VALID + "    hooks: bad.py\n"))
    assert (issue.file, issue.line, issue.path) == (str((tmp_path / "bad.py").resolve()), 3, "flows[0].hooks")
    assert "syntax error" in issue.message


def test_a_misspelt_hook_is_reported_with_the_hooks_file_and_line(tmp_path):
    (tmp_path / "typo.py").write_text("def helper():\n    pass\n\nasync def on_requst(evt):\n    return None\n")
    (issue,) = issues(write(tmp_path, VALID + "    hooks: typo.py\n"))
    assert str(issue).startswith(f"{(tmp_path / 'typo.py').resolve()}:4: flows[0].hooks: ")
    assert "did you mean on_request?" in issue.message


# --- the file itself and YAML ---------------------------------------------------------------


def test_yaml_syntax_error_has_its_line(tmp_path):
    path = write(tmp_path, edit("    label: Database Access\n", "    label: Database: Access\n"))
    ((line, key, message),) = located(path)
    assert (
        (line, key) == (11, "") and message.startswith("invalid YAML: ") and "mapping values are not allowed" in message
    )


def test_duplicate_yaml_keys_are_errors(tmp_path):
    path = write(tmp_path, edit("    label: Database Access\n", "    label: Database Access\n    label: Again\n"))
    assert located(path) == [(12, "flows[0].label", "duplicate key 'label' (first defined at line 11)")]


def test_empty_and_comment_only_files(tmp_path):
    assert located(write(tmp_path, "")) == [(1, "", "the file is empty")]
    assert located(write(tmp_path, "# nothing yet\n")) == [(1, "", "the file is empty")]


def test_top_level_must_be_a_mapping(tmp_path):
    assert located(write(tmp_path, "- a\n- b\n")) == [
        (1, "", "the file must be a mapping with slack, integrations and flows")
    ]


def test_unreadable_file(tmp_path):
    missing = tmp_path / "nope.yaml"
    (issue,) = issues(missing)
    assert issue.line is None and str(issue) == f"{missing}: cannot read the file: No such file or directory"
    (issue,) = issues(tmp_path)
    assert issue.message.startswith("cannot read the file: ")
    binary = tmp_path / "binary.yaml"
    binary.write_bytes(b"slack: \xff\xfe\n")
    (issue,) = issues(binary)
    assert issue.message == "cannot read the file: not UTF-8 text (byte 7)"


def test_anchors_and_merge_keys_keep_lines(tmp_path):
    text = edit("flows:\n", "defaults: &channel\n  approval_channel: C0APPROVALS\nflows:\n")
    text = edit("    approval_channel: C0APPROVALS\n", "    <<: *channel\n    approval_channel: 7\n", text)
    # `defaults` is unknown at the top level; approval_channel set explicitly wins over the merge.
    assert located(write(tmp_path, text)) == [
        (9, "defaults", "unknown key 'defaults'"),
        (15, "flows[0].approval_channel", "must be a string"),
    ]


def test_alias_bombs_and_recursive_aliases_are_refused(tmp_path):
    bomb = "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join([f'*{chr(97 + i)}'] * 10)}]\n" for i in range(6)
    )
    ((_, _, message),) = located(write(tmp_path, bomb))
    assert "expands to more than" in message
    ((_, _, message),) = located(write(tmp_path, "flows: &f\n  - *f\n"))
    assert "recursive" in message


def test_every_error_is_collected_in_one_pass(tmp_path):
    text = edit("    label: Database Access\n", "    label: Database Access\n    label: Twice\n")
    text = edit("      type: fake\n", "      type: fake\n      color: red\n", text)
    text = edit("        type: string\n", "        type: float\n", text)
    text = edit("    request_timeout: 24h\n", "    request_timeout: ${vault:x}\n", text)
    text = edit("  command: /sym\n", "  commands: /sym\n", text)
    found = located(write(tmp_path, text))
    assert found == [
        (2, "slack.commands", "unknown key 'commands'"),
        (12, "flows[0].label", "duplicate key 'label' (first defined at line 11)"),
        (19, "flows[0].strategy.color", "unknown key 'color'"),
        (29, "flows[0].fields[0].type", "must be 'string', 'text', 'int', 'bool', 'list' or 'duration'"),
        (
            36,
            "flows[0].request_timeout",
            "unknown reference scheme 'vault' in '${vault:x}' (known: env, file, aws_secret)",
        ),
    ]
    with pytest.raises(ConfigError) as caught:
        load(write(tmp_path, text))
    assert str(caught.value).splitlines() == [str(issue) for issue in caught.value.issues]


# --- secret references ------------------------------------------------------------------------


def test_references_are_only_syntax_checked_without_resolution(tmp_path, monkeypatch):
    monkeypatch.delenv("JITBOT_TEST_TOKEN", raising=False)
    config = load(write(tmp_path, VALID))
    assert config.integrations["api"].api_token.reveal() == "${env:JITBOT_TEST_TOKEN}"


def test_typed_key_holding_a_reference_is_checked_only_at_resolution(tmp_path, monkeypatch):
    monkeypatch.delenv("JITBOT_TEST_TIMEOUT", raising=False)
    path = write(tmp_path, edit("    request_timeout: 24h\n", "    request_timeout: ${env:JITBOT_TEST_TIMEOUT}\n"))
    assert check_config(path, strategy_types=STRATEGIES, integration_types=INTEGRATIONS) == []
    assert located(path) == [
        (
            34,
            "flows[0].request_timeout",
            "holds ${env:JITBOT_TEST_TIMEOUT}, so its value is only "
            "known once references are resolved (load with resolve_secrets=True)",
        )
    ]
    monkeypatch.setenv("JITBOT_TEST_TIMEOUT", "90m")
    monkeypatch.setenv("JITBOT_TEST_TOKEN", "tok-5555")
    assert load(path, resolve_secrets=True).flow("db_access").request_timeout == timedelta(minutes=90)


def test_check_config_lists_issues_instead_of_raising(tmp_path):
    path = write(tmp_path, edit("      type: fake\n", "      type: aws-sso\n"))
    assert [str(i) for i in check_config(path, strategy_types=STRATEGIES, integration_types=INTEGRATIONS)] == [
        f"{path}:17: flows[0].strategy.type: unknown type 'aws-sso' (known: {KNOWN})"
    ]
    assert [
        i.message
        for i in check_config(tmp_path / "missing.yaml", strategy_types=STRATEGIES, integration_types=INTEGRATIONS)
    ] == ["cannot read the file: No such file or directory"]


def test_malformed_references_are_located(tmp_path):
    text = edit("    base_url: http://127.0.0.1:9/\n", "    base_url: http://${env:HOST\n")
    text = edit("    approval_channel: C0APPROVALS\n", "    approval_channel: ${C0APPROVALS}\n", text)
    assert located(write(tmp_path, text)) == [
        (7, "integrations.api.base_url", "unterminated reference '${env:HOST': it needs a closing }"),
        (
            12,
            "flows[0].approval_channel",
            "'${C0APPROVALS}' is not a reference: write ${env:NAME}, ${file:PATH} or ${aws_secret:NAME}",
        ),
    ]


def test_env_and_file_references_resolve(tmp_path, monkeypatch):
    monkeypatch.setenv("JITBOT_TEST_TOKEN", "tok-env-7f3a9c")
    monkeypatch.setenv("JITBOT_TEST_TIMEOUT", "2h")
    (tmp_path / "secrets").mkdir()
    (tmp_path / "secrets" / "channel").write_text("C0FROMFILE\n")
    text = edit("    request_timeout: 24h\n", "    request_timeout: ${env:JITBOT_TEST_TIMEOUT}\n")
    text = edit("    approval_channel: C0APPROVALS\n", "    approval_channel: ${file:secrets/channel}\n", text)
    text = edit("    base_url: http://127.0.0.1:9/\n", "    base_url: http://${env:JITBOT_TEST_TOKEN}.local/\n", text)
    secrets = SecretRegistry()
    config = load(write(tmp_path, text), resolve_secrets=True, secrets=secrets)
    token = config.integrations["api"].api_token
    assert isinstance(token, Secret) and token.reveal() == "tok-env-7f3a9c"
    assert config.integrations["api"].base_url == "http://tok-env-7f3a9c.local/"
    assert config.flow("db_access").approval_channel == "C0FROMFILE"
    assert config.flow("db_access").request_timeout == timedelta(hours=2)
    assert "tok-env-7f3a9c" not in repr(config.integrations["api"].api_token)
    assert secrets.scrub("token tok-env-7f3a9c leaked") == "token *** leaked"
    assert config.secrets is secrets  # the config keeps the registry it was loaded with


def test_missing_references_are_one_issue_each_without_values(tmp_path, monkeypatch):
    monkeypatch.delenv("JITBOT_TEST_TOKEN", raising=False)
    monkeypatch.delenv("JITBOT_TEST_OTHER", raising=False)
    text = edit("    base_url: http://127.0.0.1:9/\n", "    base_url: ${env:JITBOT_TEST_OTHER}/${file:nope.txt}\n")
    assert located(write(tmp_path, text), resolve_secrets=True) == [
        (
            7,
            "integrations.api.base_url",
            "environment variable JITBOT_TEST_OTHER is not set (${env:JITBOT_TEST_OTHER})",
        ),
        (7, "integrations.api.base_url", "cannot read secret file 'nope.txt': No such file or directory"),
        (
            8,
            "integrations.api.api_token",
            "environment variable JITBOT_TEST_TOKEN is not set (${env:JITBOT_TEST_TOKEN})",
        ),
    ]


def test_invalid_resolved_value_names_the_reference_not_the_value(tmp_path, monkeypatch):
    monkeypatch.setenv("JITBOT_TEST_TOKEN", "tok-1234")
    monkeypatch.setenv("JITBOT_TEST_TIMEOUT", "hunter2-is-not-a-duration")
    text = edit("    request_timeout: 24h\n", "    request_timeout: ${env:JITBOT_TEST_TIMEOUT}\n")
    with pytest.raises(ConfigError) as caught:
        load(write(tmp_path, text), resolve_secrets=True)
    (issue,) = caught.value.issues
    assert (issue.line, issue.path) == (34, "flows[0].request_timeout")
    assert issue.message == "the value of ${env:JITBOT_TEST_TIMEOUT} is invalid: not a valid value here"
    assert "hunter2" not in str(caught.value)


# --- shipped files ------------------------------------------------------------------------------


def test_shipped_example_files_are_yaml(tmp_path):
    for name in ("flows.yaml", "flows.example.yaml"):
        data = yaml.safe_load((REPO / "config" / name).read_text())
        assert isinstance(data, dict) and data["flows"], name


def test_shipped_flows_yaml_is_valid_once_webhook_is_registered():
    from strategies.registry import INTEGRATION_TYPES, STRATEGY_TYPES

    if "webhook" not in STRATEGY_TYPES:
        pytest.skip("the webhook strategy is not registered yet")
    config = load_config(
        REPO / "config" / "flows.yaml", strategy_types=STRATEGY_TYPES, integration_types=INTEGRATION_TYPES
    )
    assert config.flows[0].strategy.type == "webhook"


# --- FakeStrategy -------------------------------------------------------------------------------


def fake_ctx(identity: str | None = "ana@example.com", target: str = "prod_admin") -> GrantContext:
    return GrantContext(
        request_id="r1",
        flow="db_access",
        target=as_target(FakeStrategyConfig(type="fake", targets=[{"name": target, "label": "T"}]).targets[0]),
        subject=Subject(slack_id="U1", email=identity, identity=identity),
    )


async def test_fake_strategy_passes_the_contract(tmp_path):
    config = load(write(tmp_path, VALID))
    strategy = FakeStrategy(config.flow("db_access").strategy, integrations={})
    await strategy.open()
    ctx = fake_ctx()

    async def is_held() -> bool:
        return strategy.holds("ana@example.com", "prod_admin")

    await run_contract(Harness(strategy=strategy, ctx=ctx, is_held=is_held))
    assert [c.op for c in strategy.calls if c.op != "is_active"] == ["validate", "grant", "grant", "revoke", "revoke"]
    assert strategy.opened and strategy.identity_key == "fake"


async def test_fake_strategy_scripted_failures_and_unknown_identities():
    from core.errors import StrategyUnavailable, SubjectNotFound, TargetNotFound

    strategy = FakeStrategy(FakeStrategyConfig(type="fake", targets=[{"name": "prod_admin", "label": "P"}]))
    strategy.fail_next("grant", StrategyUnavailable("down"))
    with pytest.raises(StrategyUnavailable):
        await strategy.grant(fake_ctx())
    assert not strategy.holds("ana@example.com", "prod_admin")
    await strategy.grant(fake_ctx())
    assert strategy.holds("ana@example.com", "prod_admin")

    strategy.unknown_identities.add("bob@example.com")
    (issue,) = await strategy.validate(fake_ctx("bob@example.com"))
    assert "Fake" in issue.user_message
    with pytest.raises(SubjectNotFound):
        await strategy.grant(fake_ctx("bob@example.com"))
    assert await strategy.validate(fake_ctx(None))
    with pytest.raises(SubjectNotFound):
        await strategy.grant(fake_ctx(None))
    with pytest.raises(TargetNotFound):
        await strategy.grant(fake_ctx(target="elsewhere"))
    with pytest.raises(ValueError):
        strategy.fail_next("explode", RuntimeError())


def test_the_integration_name_slack_is_reserved_for_the_bots_directory(tmp_path):
    # `slack:` becomes the first entry of the file's `integrations:` mapping, at line 2.
    path = tmp_path / "f.yaml"
    path.write_text(
        "integrations:\n  slack: {type: whatever}\n"
        + "\n".join(line for line in VALID.splitlines() if not line.startswith("integrations:"))
        + "\n"
    )
    found = [(i.line, i.path) for i in issues(path) if "reserved" in i.message]
    assert found == [(2, "integrations.slack")]
