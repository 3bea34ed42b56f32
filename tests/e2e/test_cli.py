"""The command line as an operator meets it (docs/configuration.md#commands): help, exit codes,
clear one-line failures, no tracebacks.

Every test runs `python bot.py …` as a subprocess; the ones that reach Slack use the emulator.
"""

from __future__ import annotations

import re
import socket
from pathlib import Path

import pytest

from tests.e2e.botprocess import REPO, BotProcess, bot_env, clean_env, run_cli
from tests.e2e.flows import minimal_webhook_flows

pytestmark = pytest.mark.slow

EXIT_INVALID_CONFIG = 2

UNCALLED_URL = "http://127.0.0.1:9/grants"  # port 9 (discard): these tests never reach a grant

# Each line ending in `# ERROR key.path: words` is where the validator must report that key path.
BROKEN_FLOWS = """\
slack:
  command: /sym
  alerts_chanel: C_ALERTS          # ERROR slack.alerts_chanel: unknown key
flows:
  - name: db_access
    label: Database Access
    approval_channel: C_APPROVALS
    strategy:
      type: webhook
      url: http://127.0.0.1:9/grants
      targets:
        - name: prod_admin           # ERROR flows[0].strategy.targets[0].label: missing
          settings: {database: prod}
    fields:
      - name: env                    # ERROR flows[0].fields[0].allowed_values: allowed_values
        label: Environment
        type: list
      - name: duration
        label: Duration
        type: duration
        allowed_values: [10s]
        required: true
  - name: db_access                  # ERROR flows[1].name: duplicate
    label: Again
    approval_channel: C_APPROVALS
    strategy:
      type: webhok                   # ERROR flows[1].strategy.type: unknown
      targets: []
    fields:
      - {name: duration, label: Duration, type: duration, allowed_values: [10s], required: true}
"""


def expected_errors(text: str) -> list[tuple[int, str, str]]:
    """(line, key path, a word of the message) for every `# ERROR` marker in `text`."""
    found = []
    for number, line in enumerate(text.splitlines(), start=1):
        marker = re.search(r"# ERROR (\S+): (.+)$", line)
        if marker:
            found.append((number, marker.group(1), marker.group(2).strip()))
    return found


def assert_lists_every_error(stderr: str, config: Path) -> None:
    """stderr has one `file:line: key.path: message` line per marked error, at the marked line."""
    for line, key_path, words in expected_errors(BROKEN_FLOWS):
        prefix = f"{config}:{line}: {key_path}: "
        matches = [entry for entry in stderr.splitlines() if entry.startswith(prefix)]
        assert matches, f"no error line starting {prefix!r} in:\n{stderr}"
        assert words in matches[0][len(prefix) :], matches[0]


def assert_no_traceback(result) -> None:
    """A failure an operator can act on is a sentence, not a stack."""
    assert "Traceback" not in result.stderr + result.stdout, result


def plain_lines(stderr: str) -> list[str]:
    """stderr lines that are not JSON log records: what the operator reads."""
    return [line for line in stderr.splitlines() if line.strip() and not line.lstrip().startswith("{")]


@pytest.fixture
def flows(tmp_path: Path) -> Path:
    """A valid flows file without secrets."""
    path = tmp_path / "flows.yaml"
    path.write_text(minimal_webhook_flows(UNCALLED_URL, "10s"))
    return path


# ── help ───────────────────────────────────────────────────────────────────────────────────────────


async def test_help_lists_every_subcommand_with_a_one_line_description():
    result = await run_cli("--help", env=clean_env())
    assert result.returncode == 0, result
    lines = result.stdout.splitlines()
    for command in ("run", "validate", "identities", "audit"):
        at = next((i for i, line in enumerate(lines) if re.match(rf"\s+{command}\b", line)), None)
        assert at is not None, f"{command} missing from --help:\n{result.stdout}"
        description = lines[at].split(command, 1)[1].strip() or lines[at + 1].strip()
        assert len(description.split()) >= 3, f"{command} has no description:\n{result.stdout}"


# ── run: startup failures ──────────────────────────────────────────────────────────────────────────


@pytest.mark.parametrize(
    "unset, named",
    [
        (("SLACK_BOT_TOKEN", "SLACK_APP_TOKEN"), "SLACK_BOT_TOKEN"),
        (("SLACK_APP_TOKEN",), "SLACK_APP_TOKEN"),
    ],
)
async def test_run_without_tokens_exits_non_zero_with_one_sentence(slack, flows, tmp_path, unset, named):
    env = bot_env(slack, config=flows, db=tmp_path / "jitbot.db", **{name: None for name in unset})
    result = await run_cli("run", env=env)
    assert result.returncode != 0, result
    assert_no_traceback(result)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and named in lines[0], result
    assert slack.calls() == [] and slack.connects == 0


@pytest.mark.parametrize(
    "token, error, named",
    [
        ("SLACK_BOT_TOKEN", "invalid_auth", "SLACK_BOT_TOKEN"),
        ("SLACK_APP_TOKEN", "invalid_auth", "SLACK_APP_TOKEN"),
    ],
)
async def test_run_with_a_rejected_token_says_which_without_a_traceback(slack, flows, tmp_path, token, error, named):
    wrong = {"SLACK_BOT_TOKEN": "xoxb-revoked-long-ago", "SLACK_APP_TOKEN": "xapp-1-revoked-long-ago"}[token]
    env = bot_env(slack, config=flows, db=tmp_path / "jitbot.db", **{token: wrong})
    result = await run_cli("run", env=env)
    assert result.returncode != 0, result
    assert_no_traceback(result)
    (sentence,) = plain_lines(result.stderr)
    assert named in sentence and error in sentence, result
    assert wrong not in result.stderr
    assert any(call.response.get("error") == error for call in slack.calls()), slack.calls()
    assert slack.connects == 0


async def test_run_with_an_invalid_flows_file_lists_every_error_and_exits_2_before_touching_slack(slack, tmp_path):
    config = tmp_path / "broken.yaml"
    config.write_text(BROKEN_FLOWS)
    db = tmp_path / "jitbot.db"
    result = await run_cli("run", env=bot_env(slack, config=config, db=db))
    assert result.returncode == EXIT_INVALID_CONFIG, result
    assert_no_traceback(result)
    assert_lists_every_error(result.stderr, config)
    # The flows file is checked before the tokens: Slack was not called at all, nothing was created.
    assert slack.calls() == [] and slack.connects == 0
    assert not db.exists()


async def test_run_with_a_missing_flows_file_exits_non_zero_naming_it(slack, tmp_path):
    config = tmp_path / "nowhere" / "flows.yaml"
    result = await run_cli("run", env=bot_env(slack, config=config, db=tmp_path / "jitbot.db"))
    assert result.returncode != 0, result
    assert_no_traceback(result)
    assert str(config) in result.stderr, result
    assert slack.connects == 0


async def test_run_with_an_unresolvable_secret_names_the_key_path_and_never_connects(slack, tmp_path):
    config = tmp_path / "flows.yaml"
    config.write_text(minimal_webhook_flows(UNCALLED_URL, "10s", secret="${env:JITBOT_TEST_NOT_SET_ANYWHERE}"))
    result = await run_cli("run", env=bot_env(slack, config=config, db=tmp_path / "jitbot.db"))
    assert result.returncode != 0, result
    assert_no_traceback(result)
    assert "flows[0].strategy.secret" in result.stderr and "JITBOT_TEST_NOT_SET_ANYWHERE" in result.stderr, result
    assert slack.connects == 0


DATABASE_URL = "postgresql://jitbot:pg-pass-31337@db.internal:5432/jitbot"


async def test_run_with_an_unreachable_postgresql_refuses_in_one_sentence_without_the_password(slack, flows, tmp_path):
    result = await run_cli("run", env=bot_env(slack, config=flows, db=tmp_path / "unused.db", JITBOT_DB=DATABASE_URL))
    assert result.returncode != 0, result
    assert_no_traceback(result)
    (sentence,) = plain_lines(result.stderr)
    assert "cannot connect to the PostgreSQL database postgresql://jitbot:***@db.internal:5432/jitbot" in sentence
    assert "pg-pass-31337" not in result.stderr + result.stdout  # a URL may carry a password
    assert slack.connects == 0
    assert not (REPO / "postgresql:").exists() and not (tmp_path / "unused.db").exists()


@pytest.mark.parametrize("command", [("audit",), ("identities", "list")])
async def test_audit_and_identities_refuse_a_database_url_too(command):
    result = await run_cli(*command, env=clean_env(JITBOT_DB="sqlite:///data/jitbot.db"))
    assert result.returncode != 0, result
    assert_no_traceback(result)
    (sentence,) = plain_lines(result.stderr)
    assert "JITBOT_DB" in sentence and "sqlite://" in sentence, sentence
    assert not (REPO / "sqlite:").exists()


@pytest.mark.sqlite_only("the SQLite run lock; on PostgreSQL a second bot is a replica (tests/replicas)")
async def test_a_second_bot_on_the_same_database_refuses_naming_the_first_until_the_first_is_killed(
    slack, flows, tmp_path
):
    db = tmp_path / "jitbot.db"
    first = BotProcess(slack, config=flows, db=db, logs=tmp_path / "first")
    await first.start()
    try:
        connects = slack.connects
        second = await run_cli("run", env=first.env)
        assert second.returncode != 0, second
        assert_no_traceback(second)
        (sentence,) = plain_lines(second.stderr)
        assert f"pid {first.process.pid} on {socket.gethostname()}, started 20" in sentence, sentence
        assert str(db) in sentence and "already running" in sentence, sentence
        assert slack.connects == connects  # the refused bot never opened a Socket Mode connection

        # Reading the trail beside the running bot is fine: only `run` takes the lock.
        audit = await first.cli("audit")
        assert audit.returncode == 0, audit

        # kill -9 leaves no stale lock: the OS released it with the process.
        await first.kill()
        await first.start()
        assert await first.terminate() == 0
    finally:
        await first.kill()


# ── validate ───────────────────────────────────────────────────────────────────────────────────────


async def test_validate_lists_each_error_with_file_line_and_key_path_and_exits_2(tmp_path):
    config = tmp_path / "broken.yaml"
    config.write_text(BROKEN_FLOWS)
    result = await run_cli("validate", "--config", str(config), env=clean_env())
    assert result.returncode == EXIT_INVALID_CONFIG, result
    assert_no_traceback(result)
    assert_lists_every_error(result.stderr, config)


async def test_validate_reads_jitbot_config_when_no_path_is_given(tmp_path):
    config = tmp_path / "broken.yaml"
    config.write_text(BROKEN_FLOWS)
    result = await run_cli("validate", env=clean_env(JITBOT_CONFIG=str(config)))
    assert result.returncode == EXIT_INVALID_CONFIG, result
    assert_lists_every_error(result.stderr, config)


@pytest.mark.parametrize("shipped", ["config/flows.yaml", "config/flows.example.yaml"])
async def test_validate_accepts_the_shipped_flows_files(shipped):
    result = await run_cli("validate", "--config", str(REPO / shipped), env=clean_env())
    assert result.returncode == 0, result
    assert_no_traceback(result)


# ── identities ─────────────────────────────────────────────────────────────────────────────────────


async def test_identities_set_list_remove_and_import_round_trip(tmp_path, databases):
    env = clean_env(JITBOT_DB=str(databases.where()))

    async def cli(*args: str):
        result = await run_cli("identities", *args, env=env)
        assert_no_traceback(result)
        return result

    async def listed() -> set[tuple[str, ...]]:
        result = await cli("list")
        assert result.returncode == 0, result
        return {tuple(line.split("\t")) for line in result.stdout.splitlines() if line.strip()}

    assert (await cli("set", "U_ALICE", "alice.ops", "--system", "okta_main")).returncode == 0
    assert (await cli("set", "U_BOB", "bob@corp.example")).returncode == 0
    assert await listed() == {("U_ALICE", "okta_main", "alice.ops"), ("U_BOB", "*", "bob@corp.example")}

    assert (await cli("set", "U_ALICE", "alice.admin", "--system", "okta_main")).returncode == 0
    assert ("U_ALICE", "okta_main", "alice.admin") in await listed()

    assert (await cli("remove", "U_BOB")).returncode == 0
    assert await listed() == {("U_ALICE", "okta_main", "alice.admin")}
    missing = await cli("remove", "U_NOBODY")
    assert missing.returncode != 0 and "U_NOBODY" in missing.stderr, missing

    good = tmp_path / "good.csv"
    good.write_text("slack_id,system,identity\nU_CAROL,aws_main,carol\nU_DAVE,*,dave@corp.example\n")
    imported = await cli("import", str(good))
    assert imported.returncode == 0 and "2" in imported.stdout, imported
    assert await listed() == {
        ("U_ALICE", "okta_main", "alice.admin"),
        ("U_CAROL", "aws_main", "carol"),
        ("U_DAVE", "*", "dave@corp.example"),
    }

    audit = await run_cli("audit", env=env)
    assert audit.returncode == 0, audit
    assert sum(1 for row in audit.json_lines() if row["action"] == "identity.set") == 5


async def test_identities_import_refuses_a_csv_with_a_bad_row_naming_the_line_and_imports_nothing(tmp_path, databases):
    env = clean_env(JITBOT_DB=str(databases.where()))
    bad = tmp_path / "bad.csv"
    bad.write_text("slack_id,system,identity\nU_CAROL,aws_main,carol\nU_EVE,okta_main\nU_DAVE,*,dave\n")
    result = await run_cli("identities", "import", str(bad), env=env)
    assert result.returncode != 0, result
    assert_no_traceback(result)
    assert re.search(r"\bline 3\b", result.stderr), result
    listed = await run_cli("identities", "list", env=env)
    assert listed.returncode == 0 and listed.stdout.strip() == "", listed


@pytest.mark.parametrize("limit", ["0", "-5", "99999999999999999999"])
async def test_audit_refuses_a_limit_out_of_range_in_one_sentence_before_opening_the_database(tmp_path, limit):
    # A number no database column holds (SQLite and PostgreSQL both stop at 2**63 - 1) is a usage error.
    env = clean_env(JITBOT_DB=str(tmp_path / "jitbot.db"))
    result = await run_cli("audit", "--limit", limit, env=env)
    assert result.returncode == 2, result
    assert_no_traceback(result)
    assert "--limit" in result.stderr and "1 to 1000000000" in result.stderr, result
    assert not (tmp_path / "jitbot.db").exists()
