from __future__ import annotations

import json
import textwrap
import threading
import uuid
from pathlib import Path
from typing import Literal

import pytest

from core.config import load_config
from core.errors import ConfigError, SecretResolutionError
from core.schema import IntegrationConfig, SecretStr
from core.secret_resolution import SecretResolver, fetch_aws_secret
from core.secrets import Secret, SecretReference, SecretRegistry, has_references, parse_references, substitute
from tests.fakes.moto_server import MotoServer, isolate_aws_env
from tests.fakes.strategy import TEST_STRATEGY_TYPES

# --- reference syntax -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, expected",
    [
        ("${env:OKTA_TOKEN}", [SecretReference("env", "OKTA_TOKEN")]),
        ("${file:secrets/okta.txt}", [SecretReference("file", "secrets/okta.txt")]),
        ("${aws_secret:prod/okta}", [SecretReference("aws_secret", "prod/okta")]),
        ("${aws_secret:prod/okta#token}", [SecretReference("aws_secret", "prod/okta", "token")]),
        ("Bearer ${env:A}:${env:B}!", [SecretReference("env", "A"), SecretReference("env", "B")]),
        ("no reference at all $ {}", []),
    ],
)
def test_parse_references(text, expected):
    assert parse_references(text) == expected
    assert [str(r) for r in expected] == [str(r) for r in parse_references(text)]


@pytest.mark.parametrize(
    "text, message",
    [
        ("${vault:x}", "unknown reference scheme 'vault' in '${vault:x}' (known: env, file, aws_secret)"),
        ("${env:OKTA", "unterminated reference '${env:OKTA': it needs a closing }"),
        ("${HOME}", "'${HOME}' is not a reference: write ${env:NAME}, ${file:PATH} or ${aws_secret:NAME}"),
        ("${env:MY-VAR}", "'${env:MY-VAR}': an environment variable name is letters, digits and _"),
        ("${file: }", "'${file: }': the file path is empty"),
        ("${aws_secret:#key}", "'${aws_secret:#key}': the secret name is empty"),
        ("${aws_secret:name#}", "'${aws_secret:name#}': the JSON key after '#' is empty"),
    ],
)
def test_malformed_references(text, message):
    with pytest.raises(ValueError) as caught:
        parse_references(text)
    assert str(caught.value) == message


def test_substitute_and_has_references():
    a, b = SecretReference("env", "A"), SecretReference("env", "B")
    assert substitute("x${env:A}y${env:B}z${env:A}", {a: "1", b: "2"}) == "x1y2z1"
    assert has_references("${env:A}") and not has_references("plain") and not has_references(5)


def test_reference_text_is_not_registered_as_a_secret_value():
    # A SecretStr key validated before resolution holds its reference; scrubbing must leave it readable.
    secrets = SecretRegistry()
    secrets.register("${env:JITBOT_NOT_A_SECRET}")
    assert secrets.scrub("missing ${env:JITBOT_NOT_A_SECRET}") == "missing ${env:JITBOT_NOT_A_SECRET}"
    secrets.register("pre-${env:X}-fix-value")  # a value merely containing a reference is still a value
    assert secrets.scrub("pre-${env:X}-fix-value") == "***"


def test_each_registry_scrubs_only_what_was_registered_in_it():
    first, second = SecretRegistry(), SecretRegistry()
    first.register("first-bot-token-1234")
    Secret("wrapped-but-not-registered")  # a Secret alone tells no registry: its creator registers it
    assert first.scrub("first-bot-token-1234 wrapped-but-not-registered") == "*** wrapped-but-not-registered"
    assert second.scrub("first-bot-token-1234") == "first-bot-token-1234"
    first.register("no")  # too short to protect anything
    assert first.scrub("no") == "no"


def test_secret_api_is_unchanged():
    secret = Secret("s3cr3t-unchanged")
    assert str(secret) == "***" and repr(secret) == "Secret('***')" and f"{secret}" == "***"
    assert secret.reveal() == "s3cr3t-unchanged"
    secrets = SecretRegistry()
    secrets.register(secret.reveal())
    assert secrets.scrub_data({"k": ["s3cr3t-unchanged", secret]}) == {"k": ["***", "***"]}


# --- resolver: env, file, and AWS through an injected reader ---------------------------------------


def test_resolver_env_and_file(tmp_path):
    (tmp_path / "tok").write_text("file-token-value\n\n")
    secrets = SecretRegistry()
    resolver = SecretResolver(tmp_path, environ={"TOKEN": "env-token-value"}, secrets=secrets)
    assert resolver.resolve(SecretReference("env", "TOKEN")) == "env-token-value"
    assert resolver.resolve(SecretReference("file", "tok")) == "file-token-value"
    assert secrets.scrub("a env-token-value b file-token-value") == "a *** b ***"


@pytest.mark.parametrize(
    "reference, message",
    [
        (SecretReference("env", "MISSING"), "environment variable MISSING is not set (${env:MISSING})"),
        (SecretReference("env", "EMPTY"), "${env:EMPTY} resolved to an empty value"),
        (SecretReference("file", "nope"), "cannot read secret file 'nope': No such file or directory"),
        (SecretReference("file", "."), "cannot read secret file '.': Is a directory"),
    ],
)
def test_resolver_failures_name_the_reference(tmp_path, reference, message):
    resolver = SecretResolver(tmp_path, environ={"EMPTY": ""})
    with pytest.raises(SecretResolutionError) as caught:
        resolver.resolve(reference)
    assert str(caught.value) == message


def test_resolver_fetches_each_aws_secret_once_per_pass(tmp_path):
    calls: list[str] = []
    lock = threading.Lock()
    store = {"app": json.dumps({"user": "svc-user", "password": "pw-9f8e7d", "port": 5432}), "plain": "plain-value-1"}

    def read(name: str) -> str:
        with lock:
            calls.append(name)
        if name not in store:
            raise SecretResolutionError(f"AWS secret '{name}' does not exist")
        return store[name]

    resolver = SecretResolver(tmp_path, environ={}, read_aws_secret=read)
    refs = [
        SecretReference("aws_secret", "app", "user"),
        SecretReference("aws_secret", "app", "password"),
        SecretReference("aws_secret", "plain"),
        SecretReference("aws_secret", "gone"),
    ]
    resolver.prefetch(refs)
    assert sorted(calls) == ["app", "gone", "plain"]
    assert [resolver.resolve(r) for r in refs[:3]] == ["svc-user", "pw-9f8e7d", "plain-value-1"]
    assert resolver.resolve(SecretReference("aws_secret", "app", "port")) == "5432"
    for _ in range(2):
        with pytest.raises(SecretResolutionError, match="AWS secret 'gone' does not exist"):
            resolver.resolve(refs[3])
    with pytest.raises(SecretResolutionError, match="AWS secret 'app' has no JSON key 'nope'"):
        resolver.resolve(SecretReference("aws_secret", "app", "nope"))
    with pytest.raises(SecretResolutionError, match="AWS secret 'plain' is not a JSON object"):
        resolver.resolve(SecretReference("aws_secret", "plain", "k"))
    assert sorted(calls) == ["app", "gone", "plain"]


# --- AWS Secrets Manager through moto's server ---------------------------------------------------------


@pytest.fixture
def aws_env(moto_server: MotoServer, monkeypatch, tmp_path):
    """Secrets Manager on the session's moto server, as the standard chain sees it; the region only in AWS_REGION."""
    isolate_aws_env(monkeypatch, tmp_path, endpoint_url=moto_server.url)
    monkeypatch.delenv("AWS_DEFAULT_REGION")  # so that taking AWS_REGION away leaves no region at all
    moto_server.reset()
    return moto_server.client("secretsmanager")


def unique(prefix: str) -> str:
    return f"{prefix}/{uuid.uuid4().hex[:8]}"


def test_fetch_aws_secret_plain_and_json_key(aws_env):
    plain, doc = unique("jitbot/plain"), unique("jitbot/doc")
    aws_env.create_secret(Name=plain, SecretString="plain-aws-value")
    aws_env.create_secret(Name=doc, SecretString=json.dumps({"api_token": "json-aws-value"}))
    assert fetch_aws_secret(plain) == "plain-aws-value"
    assert fetch_aws_secret(doc, "api_token") == "json-aws-value"


def test_fetch_aws_secret_failures_never_show_the_value(aws_env):
    doc, binary = unique("jitbot/doc"), unique("jitbot/binary")
    aws_env.create_secret(Name=doc, SecretString=json.dumps({"a": "hidden-aws-value"}))
    aws_env.create_secret(Name=binary, SecretBinary=b"\x00hidden")
    cases = [
        ((unique("jitbot/missing"),), "does not exist"),
        ((doc, "b"), f"AWS secret '{doc}' has no JSON key 'b'"),
        ((binary,), "has no SecretString"),
    ]
    for args, message in cases:
        with pytest.raises(SecretResolutionError) as caught:
            fetch_aws_secret(*args)
        assert message in str(caught.value) and "hidden" not in str(caught.value)


def test_fetch_aws_secret_without_a_region(aws_env, monkeypatch):
    monkeypatch.delenv("AWS_REGION")
    with pytest.raises(SecretResolutionError, match="no AWS region configured: set AWS_REGION"):
        fetch_aws_secret("anything")


class VaultedConfig(IntegrationConfig):
    type: Literal["vaulted"]
    username: str
    password: SecretStr


class VaultedIntegration:
    config_model = VaultedConfig


FLOWS = """\
integrations:
  db:
    type: vaulted
    username: ${aws_secret:NAME#user}
    password: ${aws_secret:NAME#password}
flows:
  - name: db_access
    label: Database Access
    approval_channel: C0APPROVALS
    strategy:
      type: fake
      targets:
        - {name: prod, label: Prod}
    fields:
      - {name: duration, label: Duration, type: duration, max: 1h, required: true}
"""


def load_flows(tmp_path: Path, text: str, secrets: SecretRegistry | None = None):
    path = tmp_path / "flows.yaml"
    path.write_text(textwrap.dedent(text))
    return load_config(
        path,
        strategy_types=TEST_STRATEGY_TYPES,
        integration_types={"vaulted": VaultedIntegration},
        resolve_secrets=True,
        secrets=secrets,
    )


def test_aws_secret_references_resolve_in_the_flows_file(aws_env, tmp_path):
    name = unique("jitbot/db")
    aws_env.create_secret(Name=name, SecretString=json.dumps({"user": "svc_jitbot", "password": "aws-pw-31337"}))
    secrets = SecretRegistry()
    config = load_flows(tmp_path, FLOWS.replace("NAME", name), secrets)
    db = config.integrations["db"]
    assert db.username == "svc_jitbot"
    assert isinstance(db.password, Secret) and db.password.reveal() == "aws-pw-31337"
    for text in (str(config), repr(config), str(db), repr(db), str(config.model_dump()), config.model_dump_json()):
        assert "aws-pw-31337" not in text
    assert secrets.scrub("login with aws-pw-31337") == "login with ***"


def test_missing_aws_secret_and_key_are_located_without_values(aws_env, tmp_path):
    name = unique("jitbot/db")
    aws_env.create_secret(Name=name, SecretString=json.dumps({"user": "svc_other", "pass": "aws-pw-hidden-42"}))
    with pytest.raises(ConfigError) as caught:
        load_flows(tmp_path, FLOWS.replace("NAME", name))
    assert [(i.line, i.path, i.message) for i in caught.value.issues] == [
        (5, "integrations.db.password", f"AWS secret '{name}' has no JSON key 'password'"),
    ]
    missing = unique("jitbot/missing")
    with pytest.raises(ConfigError) as caught:
        load_flows(tmp_path, FLOWS.replace("NAME", missing))
    assert [(i.line, i.path, i.message) for i in caught.value.issues] == [
        (4, "integrations.db.username", f"AWS secret '{missing}' does not exist"),
        (5, "integrations.db.password", f"AWS secret '{missing}' does not exist"),
    ]
    assert "aws-pw-hidden-42" not in str(caught.value)


def test_a_secret_written_escaped_by_json_repr_or_a_traceback_is_still_scrubbed():
    secret = 'pa"ss\\wörd\nline2'
    secrets = SecretRegistry()
    secrets.register(secret)
    renderings = [
        json.dumps(secret),
        json.dumps(secret, ensure_ascii=False),
        repr(secret),
        ascii(secret),
        repr(["it's", secret]),
        ascii({"k": secret + "'"}),
        str(KeyError(secret)),
        f"got {secret!r} back",
    ]
    for text in renderings:
        assert "line2" not in secrets.scrub(text) and "***" in secrets.scrub(text), (text, secrets.scrub(text))
