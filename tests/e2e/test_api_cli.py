"""`bot.py request`, `requests` and `tokens` as a person or a CI job runs them: real subprocesses, the
running bot's HTTP API, the Slack emulator for the approver's click."""

from __future__ import annotations

import asyncio

import pytest

from tests.e2e.api_helpers import ApiBot, start_api_bot
from tests.e2e.botprocess import clean_env, run_cli
from tests.e2e.flows import APPROVAL_CHANNEL

pytestmark = pytest.mark.slow


@pytest.fixture
async def api(start_webhook_bot) -> ApiBot:
    return await start_api_bot(start_webhook_bot)


def cli_env(api: ApiBot, token: str | None) -> dict[str, str]:
    return clean_env(JITBOT_API_URL=api.url, JITBOT_API_TOKEN=token)


async def test_a_request_from_the_cli_waits_until_a_click_in_slack_approves_it(api, receiver):
    token = await api.token("U_ALICE", scopes="request,read", name="alice-ci")
    command = asyncio.ensure_future(
        run_cli(
            *("request", "db_access", "--target", "prod_admin", "--field", "reason=deploy 42"),
            *("--field", "ticket=OPS-7", "--duration", "30m", "--wait"),
            env=cli_env(api, token),
        )
    )
    message = await api.bot.slack.wait_for_message(APPROVAL_CHANNEL, contains="deploy 42", timeout=20)
    assert "OPS-7" in message.plain
    await api.bot.approve(message, "U_BOB")
    result = await command
    assert result.returncode == 0, result
    request_id = result.stdout.strip()
    assert "waiting for approval" in result.stderr and "granted by U_BOB" in result.stderr, result
    assert (await api.bot.engine.requests.get(request_id)).status.value == "granted"
    await receiver.wait_for(1, "grant")


async def test_a_denied_request_exits_1_and_bad_input_exits_2(api):
    token = await api.token("U_ALICE", scopes="request,read")
    env = cli_env(api, token)
    command = asyncio.ensure_future(
        run_cli(
            "request",
            "db_access",
            "--target",
            "Prod Admin",
            "--field",
            "reason=why",
            "--duration",
            "1h",
            "--wait",
            env=env,
        )
    )
    message = await api.bot.slack.wait_for_message(APPROVAL_CHANNEL, contains="why", timeout=20)
    await api.bot.deny(message, "U_CAROL", reason="not today")
    denied = await command
    assert denied.returncode == 1 and "denied by U_CAROL: not today" in denied.stderr, denied

    for args, words in (
        (("request", "db_access", "--target", "prod_admin", "--duration", "5h"), "fields.duration"),
        (("request", "db_access", "--target", "nope"), "no target"),
        (("request", "nope", "--target", "prod_admin"), "no flow named"),
        (("request", "db_access", "--target", "prod_admin", "--field", "color=red"), "no field"),
    ):
        result = await run_cli(*args, env=env)
        assert result.returncode == 2 and words in result.stderr and "Traceback" not in result.stderr, result


async def test_the_cli_names_what_is_missing_and_a_refused_token_exits_1(api):
    result = await run_cli("requests", env=clean_env())
    assert result.returncode == 2
    assert "JITBOT_API_URL and JITBOT_API_TOKEN are not set" in result.stderr, result
    result = await run_cli("requests", env=clean_env(JITBOT_API_URL=api.url))
    assert result.returncode == 2 and "JITBOT_API_TOKEN is not set" in result.stderr
    result = await run_cli("requests", env=cli_env(api, "jit_000000000000_" + "A" * 43))
    assert result.returncode == 1 and "This token is not valid. (401)" in result.stderr


async def test_requests_lists_a_table(api):
    token = await api.token("U_ALICE", scopes="request,read")
    env = cli_env(api, token)
    made = await run_cli(
        "request", "db_access", "--target", "prod_admin", "--field", "reason=table", "--duration", "10s", env=env
    )
    assert made.returncode == 0, made
    listed = await run_cli("requests", "--mine", "--status", "pending", env=env)
    assert listed.returncode == 0, listed
    header, row = listed.stdout.splitlines()
    assert header.split() == ["ID", "FLOW", "TARGET", "REQUESTER", "STATUS", "CREATED", "ENDS"]
    assert row.split()[:5] == [made.stdout.strip(), "db_access", "prod_admin", "U_ALICE", "pending"]


async def test_tokens_are_created_shown_once_listed_and_revoked(databases):
    env = clean_env(JITBOT_DB=str(databases.where()), USER="ops")
    created = await run_cli("tokens", "create", "--user", "U_ALICE", "--name", "ci", "--scope", "request", env=env)
    assert created.returncode == 0, created
    token = created.stdout.strip()
    assert token.startswith("jit_") and "shown only this once" in created.stderr
    listed = await run_cli("tokens", "list", env=env)
    assert token not in listed.stdout and "ci" in listed.stdout and "active" in listed.stdout
    assert (await run_cli("tokens", "revoke", "ci", env=env)).returncode == 0
    assert "revoked" in (await run_cli("tokens", "list", env=env)).stdout
    again = await run_cli("tokens", "revoke", "ci", env=env)
    assert again.returncode == 2 and "already revoked" in again.stderr
    bad = await run_cli("tokens", "create", "--user", "U1", "--scope", "root", env=env)
    assert bad.returncode == 2 and "unknown scope root" in bad.stderr
    for wrong in ("alice@example.com", "@alice", "U123'; x", "u123"):
        named = await run_cli("tokens", "create", "--user", wrong, env=env)
        assert named.returncode == 2 and "is not a Slack user id" in named.stderr, named
    audit = await run_cli("audit", env=env)
    assert [line["action"] for line in audit.json_lines()] == ["token.created", "token.revoked"]
    assert token not in audit.stdout


async def test_revoke_ends_a_live_grant_from_the_command_line(api, receiver):
    message = await api.bot.request("U_ALICE", "db_access", APPROVAL_CHANNEL, target="Prod Admin")
    request = await api.bot.request_for(message)
    await api.bot.approve(message, "U_BOB")
    token = await api.token("U_ALICE", scopes="request")  # the requester may end their own access
    ended = await run_cli("revoke", request.id, env=cli_env(api, token))
    assert ended.returncode == 0 and "access ended" in ended.stdout, ended
    await receiver.wait_for(1, "revoke")
    again = await run_cli("revoke", request.id, env=cli_env(api, token))
    assert again.returncode == 1 and "(409)" in again.stderr, again
    unknown = await run_cli("revoke", "0000000000000000", env=cli_env(api, token))
    assert unknown.returncode == 2 and "(404)" in unknown.stderr, unknown
