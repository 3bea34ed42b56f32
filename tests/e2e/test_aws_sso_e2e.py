"""The aws_sso strategy end to end: it grants through moto's IAM Identity Center, and `${aws_secret:…}` at start.

Each test starts the production Runtime in-process against the Slack emulator (real Socket Mode),
with an `aws` integration whose endpoint is a moto server; time is a FrozenClock moved by the test.
"""

from __future__ import annotations

import asyncio
import json

import pytest

from core.models import RequestStatus
from core.secrets import SecretRegistry
from tests.db_faults import stored_text
from tests.e2e.flows import (
    flow,
    flows_file,
    okta_integration,
    okta_strategy,
    reason_and_duration,
    target,
    webhook_strategy,
)
from tests.e2e.harness import capture_logs
from tests.fakes.moto_server import REGION, IdentityCenter, seed_identity_center
from tests.fakes.moto_server import SSO_ACCOUNT as ACCOUNT
from tests.fakes.okta_api import OktaFake
from tests.fakes.webhook_receiver import WebhookReceiver

ALICE_EMAIL = "alice@example.com"  # the emulator's U_ALICE


@pytest.fixture
def sso(moto) -> IdentityCenter:
    return seed_identity_center(moto, email=ALICE_EMAIL)


def sso_flows(moto_url: str, sso: IdentityCenter) -> str:
    """One aws_sso flow (ProdAdmin in ACCOUNT) through an `aws` integration whose endpoint is moto."""
    strategy = {
        "type": "aws_sso",
        "integration": "aws",
        "instance_arn": sso.instance_arn,
        "targets": [target("prod_admin", "Prod Admin", permission_set_arn=sso.permission_set_arn, account_id=ACCOUNT)],
    }
    fields = reason_and_duration("10s", "30m", "1h", reason_label="Why do you need access?")
    return flows_file(
        flow("aws_prod", "AWS Production", strategy, fields),
        integrations={
            "aws": {
                "type": "aws",
                "region": REGION,
                "endpoint_url": moto_url,
                "access_portal_url": "https://d-1234567890.awsapps.com/start",
            }
        },
    )


async def test_approval_creates_the_assignment_and_the_end_of_the_window_deletes_it(launch, moto, sso):
    bot = await launch.start(sso_flows(moto.url, sso))
    message = await bot.request("U_ALICE", "aws_prod", "C_APPROVALS", target="Prod Admin", duration="30m")
    assert "Prod Admin" in message.plain and {"Approve", "Deny"} <= set(message.button_texts)
    assert sso.holders() == []

    await bot.slack.click(message, text="Approve", user="U_BOB")
    granted = await bot.slack.wait_for_message("C_APPROVALS", contains="granted until")
    assert (
        granted.ts == message.ts
        and "U_BOB" in granted.plain
        and [b["text"]["text"] for b in granted.buttons] == ["Revoke now"]
    )
    assert await asyncio.to_thread(sso.holders) == [sso.user_id]
    dm = await bot.slack.wait_for_dm("U_ALICE", contains="granted")
    assert "https://d-1234567890.awsapps.com/start" in dm.plain  # how to use it, from the integration
    request = await bot.request_for(message)
    assert request.status is RequestStatus.GRANTED and request.grant_state["principal_id"] == sso.user_id

    bot.clock.advance(minutes=29, seconds=59)
    await bot.engine.sweep()
    assert await asyncio.to_thread(sso.holders) == [sso.user_id]

    bot.clock.advance(seconds=1)
    await bot.engine.sweep()
    assert await asyncio.to_thread(sso.holders) == []
    await bot.slack.wait_for_dm("U_ALICE", contains="expired")
    ended = await bot.slack.wait_for_message("C_APPROVALS", contains="Access ended")
    assert ended.ts == message.ts
    assert (await bot.engine.requests.get(request.id)).status is RequestStatus.REVOKED
    actions = [e.action for e in await bot.audit(request.id)]
    assert actions[-1] == "access.revoked" and "access.granted" in actions


async def test_a_user_missing_from_the_identity_store_gets_an_inline_error_and_nothing_is_posted(launch, moto, sso):
    bot = await launch.start(sso_flows(moto.url, sso))
    result = await bot.submit("U_BOB", "aws_prod", target="Prod Admin")  # bob@example.com is not in moto

    assert result.response_action == "errors" and set(result.errors) == {"target"}
    assert "AWS IAM Identity Center" in result.errors["target"] and "bob@example.com" in result.errors["target"]
    assert result.view is not None and result.view.is_open  # the modal stays open with the error
    assert bot.slack.messages_in("C_APPROVALS") == [] and bot.slack.calls("chat.postMessage") == []
    assert await bot.all_requests() == []
    assert await asyncio.to_thread(sso.holders) == []


# ── ${aws_secret:…} ───────────────────────────────────────────────────────────────────────────────

WEBHOOK_SECRET = "whsec-from-secrets-manager-7f3a9c1e"
OKTA_TOKEN = "00okta-token-from-secrets-manager-5b8d2e"


def secret_flows(receiver_url: str, okta_url: str, group_id: str) -> str:
    """A webhook flow and an Okta flow whose webhook secret and Okta token are `${aws_secret:…}` references."""
    webhook = webhook_strategy(
        receiver_url,
        target("prod_admin", "Prod Admin", settings={"database": "prod"}),
        secret="${aws_secret:jitbot/webhook-secret}",
    )
    okta = okta_strategy("okta_main", target("sre", "SRE", group_id=group_id))
    return flows_file(
        flow("db_access", "Database Access", webhook, reason_and_duration("30m")),
        flow("okta_groups", "Okta groups", okta, reason_and_duration("30m")),
        integrations={"okta_main": okta_integration(okta_url, "${aws_secret:jitbot/okta#api_token}")},
    )


async def test_aws_secrets_are_resolved_at_start_used_end_to_end_and_never_logged_or_audited(launch, moto, tmp_path):
    secrets = moto.client("secretsmanager")
    secrets.create_secret(Name="jitbot/webhook-secret", SecretString=WEBHOOK_SECRET)
    secrets.create_secret(Name="jitbot/okta", SecretString=json.dumps({"api_token": OKTA_TOKEN, "other": "x"}))

    registry = SecretRegistry()  # one per bot, as `bot.py run` makes it: logging and the runtime share it
    with capture_logs(registry) as logs:
        async with WebhookReceiver(secret=WEBHOOK_SECRET) as receiver, OktaFake(api_token=OKTA_TOKEN) as okta:
            alice = okta.add_user(ALICE_EMAIL)
            group = okta.add_group("SRE")
            bot = await launch.start(secret_flows(receiver.url, okta.url, group), secrets=registry)

            # The webhook's HMAC key came from Secrets Manager: the receiver only accepts its signature.
            message = await bot.request("U_ALICE", "db_access", "C_APPROVALS", target="Prod Admin")
            await bot.slack.click(message, text="Approve", user="U_BOB")
            (grant,) = await receiver.wait_for(1, "grant")
            assert not grant.rejected and receiver.is_held(grant.body["request_id"])

            # The Okta token was one key of a JSON secret: the fake answers 401 to anything else.
            message = await bot.request("U_ALICE", "okta_groups", "C_APPROVALS", target="SRE")
            await bot.approve(message)
            assert okta.is_member(group, alice)

            bot.clock.advance(minutes=30)
            await bot.engine.sweep()
            await receiver.wait_for(1, "revoke")
            assert not okta.is_member(group, alice)
            audit_rows = await bot.engine.audit.list()
            slack_calls = repr([call.args for call in bot.slack.calls()])
            await bot.stop()

    assert [d for d in receiver.deliveries if d.rejected] == []
    events = {line.get("event") for line in logs.lines}
    assert {"jitbot.started", "access.granted", "access.revoked", "jitbot.stopped"} <= events  # the capture worked
    stored = stored_text(bot.db_path)
    assert stored and logs.events
    for secret in (WEBHOOK_SECRET, OKTA_TOKEN):
        assert secret not in logs.text and secret not in slack_calls
        assert not [e for e in logs.events if secret in repr(e)], "a secret reached a log call before scrubbing"
        assert not [row for row in audit_rows if secret in repr(row)]
        assert secret.encode() not in stored  # the database (and SQLite's WAL), byte for byte
    assert len(audit_rows) >= 8
