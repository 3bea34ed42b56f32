"""Restart recovery (docs/guarantees.md) with a real process: `bot.py run` is killed with SIGKILL
and restarted on the same database.

The bot runs as a subprocess on the real clock with real APScheduler timers, against the Slack
emulator and a webhook receiver in this process; durations are a few seconds, and every wait is on
an event (a delivery, a message) with a generous timeout. The only sleeps stand for an outage:
the bot is dead and the test lets its grant's end pass.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from sandbox.slack import Message, SlackEmulator
from tests.databases import TestDatabases
from tests.db_faults import stored_text
from tests.e2e.botprocess import ArrivalLog, BotProcess, db_time, read_rows
from tests.e2e.flows import PROD_ADMIN, SECOPS, db_access_flow, flows_file
from tests.e2e.harness import submit_request
from tests.fakes.webhook_receiver import WebhookReceiver

pytestmark = pytest.mark.slow

# Distinctive, so a leak anywhere (a log line, an audit row) is found by a plain substring search.
WEBHOOK_SECRET = "whsec-restart-5c1e9f0d7a3b-never-logged"
SECRET_ENV = "JITBOT_TEST_WEBHOOK_SECRET"
ON_TIME = timedelta(seconds=2)  # revocation runs within 2 s of the end time (docs/slack-behaviour.md)


@pytest.fixture
async def webhook() -> AsyncIterator[WebhookReceiver]:
    """The grant/revoke receiver; `deliveries` is an ArrivalLog (arrival times, in-flight waits)."""
    async with WebhookReceiver(secret=WEBHOOK_SECRET, deliveries=ArrivalLog()) as receiver:
        yield receiver


@pytest.fixture
async def jitbot(
    slack: SlackEmulator, webhook: WebhookReceiver, tmp_path: Path, databases: TestDatabases
) -> AsyncIterator[BotProcess]:
    """A not-yet-started `bot.py run` subprocess; whatever is left running is killed at the end."""
    config = tmp_path / "flows.yaml"
    config.write_text(
        flows_file(
            db_access_flow(webhook.url, "3s", "5s", secret_env=SECRET_ENV, targets=(PROD_ADMIN,), approvers=SECOPS)
        )
    )
    bot = BotProcess(
        slack,
        config=config,
        db=databases.where(),
        logs=tmp_path / "logs",
        # On PostgreSQL a dead process's leases hold its work for the lease time (5 s by default) before anyone,
        # its own restart included, takes it over; the takeover has tests of its own (tests/replicas), and
        # these grants last 3-5 s.
        extra_env={SECRET_ENV: WEBHOOK_SECRET, "JITBOT_LEASE_SECONDS": "1"},
    )
    try:
        yield bot
    finally:
        await bot.kill()


# ── steps ──────────────────────────────────────────────────────────────────────────────────────────


async def request_access(slack: SlackEmulator, duration: str) -> Message:
    """Alice asks for Prod Admin for `duration`; returns the request's message in the approval channel."""
    before = len(slack.messages_in("C_APPROVALS"))
    await submit_request(slack, "U_ALICE", "db_access", target="Prod Admin", duration=duration, timeout=10)
    await slack.wait_for(
        lambda: len(slack.messages_in("C_APPROVALS")) > before,
        timeout=10,
        description="the request posted to C_APPROVALS",
    )
    return slack.messages_in("C_APPROVALS")[-1]


async def approve_and_wait_granted(slack: SlackEmulator, webhook: WebhookReceiver, message: Message):
    """Bob approves; returns the answered grant delivery once the message shows the grant."""
    await slack.click(message, text="Approve", user="U_BOB")
    (grant,) = await webhook.wait_for(1, "grant", timeout=10)
    assert grant.status == 200 and not grant.rejected
    await wait_message(slack, message, "granted until")
    return grant


async def wait_message(slack: SlackEmulator, message: Message, contains: str, timeout: float = 10) -> Message:
    """The approval message, edited in place (same ts), once it contains `contains`."""
    return await slack.wait_for_message(
        "C_APPROVALS", contains=contains, timeout=timeout, where=lambda m: m.ts == message.ts
    )


async def sleep_until(moment: datetime) -> None:
    """The outage: let wall-clock time pass `moment` while the bot is dead."""
    await asyncio.sleep(max(0.0, (moment - datetime.now(UTC)).total_seconds()))


def seconds_until(moment: datetime) -> float:
    """Seconds from now to `moment` (negative when it has passed)."""
    return (moment - datetime.now(UTC)).total_seconds()


def request_window(bot: BotProcess, delivery) -> tuple[str, datetime]:
    """The delivery's request id and its stored end (the webhook body carries it to the second)."""
    request_id = delivery.body["request_id"]
    expires_at = db_time(bot.row(request_id)["expires_at"])
    assert db_time(delivery.body["expires_at"]) == expires_at.replace(microsecond=0)
    return request_id, expires_at


async def wait_revoked_at_start(webhook: WebhookReceiver, bot: BotProcess, request_id: str) -> None:
    """The restarted bot revokes the request at start (recovery), not on a later timer or the minute sweep."""
    (revoke,) = await webhook.wait_for(1, "revoke", timeout=10)
    assert revoke.status == 200 and revoke.body["request_id"] == request_id
    assert webhook.deliveries.when(revoke) <= bot.connected_at + ON_TIME


async def wait_access_ended(slack: SlackEmulator, webhook: WebhookReceiver, message: Message, request_id: str) -> None:
    """The approval message says access ended, Alice was told it expired, and the receiver no longer holds it."""
    await wait_message(slack, message, "Access ended")
    await slack.wait_for_dm("U_ALICE", contains="expired")
    assert not webhook.is_held(request_id)


def assert_on_time(arrived: datetime, expires_at: datetime) -> None:
    """Never before the end, and at most ON_TIME after it."""
    assert expires_at <= arrived <= expires_at + ON_TIME, (
        f"revoke arrived {(arrived - expires_at).total_seconds():+.3f}s from the end (allowed 0..{ON_TIME.seconds}s)"
    )


# ── kill -9 with a live grant ───────────────────────────────────────────────────────────────────────


async def test_killed_after_a_grant_and_restarted_before_its_end_revokes_on_time(slack, webhook, jitbot):
    await jitbot.start()
    message = await request_access(slack, "5s")
    grant = await approve_and_wait_granted(slack, webhook, message)
    request_id, expires_at = request_window(jitbot, grant)
    await slack.wait_for_dm("U_ALICE", contains="granted")

    await jitbot.kill()
    assert jitbot.row(request_id)["status"] == "granted"
    await jitbot.start()
    assert seconds_until(expires_at) > 1, "the restart took too long for this test to mean anything"

    (revoke,) = await webhook.wait_for(1, "revoke", timeout=seconds_until(expires_at) + 10)
    assert revoke.status == 200 and revoke.body["request_id"] == request_id
    assert_on_time(webhook.deliveries.when(revoke), expires_at)
    await wait_access_ended(slack, webhook, message, request_id)
    assert jitbot.row(request_id)["status"] == "revoked"
    assert len(webhook.accepted("grant")) == 1  # the restart did not grant again


async def test_killed_after_a_grant_and_restarted_after_its_end_revokes_at_start(slack, webhook, jitbot):
    await jitbot.start()
    message = await request_access(slack, "3s")
    grant = await approve_and_wait_granted(slack, webhook, message)
    request_id, expires_at = request_window(jitbot, grant)

    await jitbot.kill()
    await sleep_until(expires_at + timedelta(seconds=0.5))
    assert webhook.accepted("revoke") == [] and webhook.is_held(request_id)

    await jitbot.start()
    await wait_revoked_at_start(webhook, jitbot, request_id)
    await wait_access_ended(slack, webhook, message, request_id)
    assert jitbot.row(request_id)["status"] == "revoked"


# ── kill -9 between approval and grant ──────────────────────────────────────────────────────────────


async def kill_with_the_grant_in_flight(slack, webhook, jitbot, message: Message):
    """Approve while the receiver holds its answer, and SIGKILL the bot before the answer comes."""
    webhook.set_latency(1.5)
    await slack.click(message, text="Approve", user="U_BOB")
    (in_flight,) = await webhook.deliveries.wait_arrived(1, "grant")
    await jitbot.kill()
    assert in_flight.status == 0, "the grant was answered before the kill; the test lost its race"
    webhook.set_latency(0)
    return in_flight


def applied_grants(webhook: WebhookReceiver) -> list:
    """Grant deliveries the receiver carried out (answered 2xx and not a duplicate of an earlier one)."""
    return [d for d in webhook.deliveries if d.action == "grant" and d.status == 200 and not d.duplicate]


async def test_killed_with_the_grant_in_flight_grants_exactly_once_after_restart_and_revokes_on_time(
    slack, webhook, jitbot
):
    await jitbot.start()
    message = await request_access(slack, "5s")
    in_flight = await kill_with_the_grant_in_flight(slack, webhook, jitbot, message)
    request_id, expires_at = request_window(jitbot, in_flight)
    assert jitbot.row(request_id)["status"] == "approved"

    await jitbot.start()
    (_, regrant) = await webhook.deliveries.wait_arrived(2, "grant")
    await wait_message(slack, message, "granted until")
    await slack.wait_for_dm("U_ALICE", contains="granted")
    assert regrant.body["request_id"] == request_id
    assert regrant.body["expires_at"] == in_flight.body["expires_at"], "the restart extended the grant"
    assert len(applied_grants(webhook)) == 1 and webhook.is_held(request_id) and len(webhook.grants) == 1
    row = jitbot.row(request_id)
    assert row["status"] == "granted" and db_time(row["expires_at"]) == expires_at, "the restart moved the end"

    (revoke,) = await webhook.wait_for(1, "revoke", timeout=seconds_until(expires_at) + 10)
    assert_on_time(webhook.deliveries.when(revoke), expires_at)
    await wait_access_ended(slack, webhook, message, request_id)
    assert len(applied_grants(webhook)) == 1

    audit = await jitbot.cli("audit", "--request", request_id)
    assert audit.returncode == 0, audit
    rows = audit.json_lines()
    assert all(r["request_id"] == request_id for r in rows)
    path = [(r["status_from"], r["status_to"]) for r in rows if r["status_from"] != r["status_to"]]
    assert path == [(None, "pending"), ("pending", "approved"), ("approved", "granted"), ("granted", "revoked")], rows
    assert [r["action"] for r in rows].count("access.granted") == 1


async def test_a_grant_in_doubt_whose_end_passed_during_the_outage_is_revoked_never_extended(slack, webhook, jitbot):
    await jitbot.start()
    message = await request_access(slack, "3s")
    in_flight = await kill_with_the_grant_in_flight(slack, webhook, jitbot, message)
    request_id, expires_at = request_window(jitbot, in_flight)
    assert jitbot.row(request_id)["status"] == "approved"

    await sleep_until(expires_at + timedelta(seconds=0.5))
    await jitbot.start()
    # The bot cannot know whether the grant took effect: it revokes, and never grants past the end.
    await wait_revoked_at_start(webhook, jitbot, request_id)
    await wait_access_ended(slack, webhook, message, request_id)
    assert [d for d in webhook.deliveries if d.action == "grant"] == [in_flight], "granted again after its end"
    assert jitbot.row(request_id)["status"] == "revoked"
    actions = [r["action"] for r in (await jitbot.cli("audit", "--request", request_id)).json_lines()]
    assert "access.granted" not in actions and actions[-1] == "access.revoked", actions


# ── a receiver that refuses revocations ─────────────────────────────────────────────────────────────


async def test_a_failing_revocation_is_retried_with_backoff_alerted_each_time_then_revoked(slack, webhook, jitbot):
    await jitbot.start()
    message = await request_access(slack, "3s")
    grant = await approve_and_wait_granted(slack, webhook, message)
    request_id, expires_at = request_window(jitbot, grant)
    webhook.fail_next(2, status=500, action="revoke", body="revocation backend down")

    attempts = await webhook.wait_for(3, "revoke", timeout=seconds_until(expires_at) + 20)
    assert [d.status for d in attempts] == [500, 500, 200]
    first, second, third = (webhook.deliveries.when(d) for d in attempts)
    assert_on_time(first, expires_at)
    gaps = [(second - first).total_seconds(), (third - second).total_seconds()]
    # Engine back-off: 2 s, then 4 s (doubling); allow scheduling jitter, insist it grows.
    assert 1.5 <= gaps[0] <= 4 and 3.5 <= gaps[1] <= 7 and gaps[1] > gaps[0], gaps

    for attempt in (1, 2):
        alert = await slack.wait_for_message("C_ALERTS", contains=f"attempt {attempt}")
        assert request_id in alert.plain
    await wait_access_ended(slack, webhook, message, request_id)
    assert not any("attempt 3" in m.plain for m in slack.messages_in("C_ALERTS"))

    audit = await jitbot.cli("audit", "--request", request_id)
    assert audit.returncode == 0, audit
    rows = audit.json_lines()
    failures = [r for r in rows if r["action"] == "revoke.failed"]
    assert [f["detail"]["attempt"] for f in failures] == [1, 2]
    assert [f["detail"]["retry_in_seconds"] for f in failures] == [2, 4]
    assert rows[-1]["action"] == "access.revoked" and rows[-1]["status_to"] == "revoked"


# ── secrets ─────────────────────────────────────────────────────────────────────────────────────────


async def test_the_resolved_webhook_secret_appears_in_no_log_line_and_no_audit_row(slack, webhook, jitbot):
    await jitbot.start()
    message = await request_access(slack, "3s")
    grant = await approve_and_wait_granted(slack, webhook, message)
    request_id = grant.body["request_id"]
    await webhook.wait_for(1, "revoke", timeout=15)
    await wait_message(slack, message, "Access ended")
    await slack.wait_for_dm("U_ALICE", contains="expired")
    assert await jitbot.terminate() == 0

    # The secret was resolved and used: the receiver checked every signature with it.
    assert webhook.deliveries and not any(d.rejected for d in webhook.deliveries)
    events = {r.get("event") for r in jitbot.log_records()}
    assert {"access.granted", "access.revoked", "jitbot.stopped"} <= events, "the JSON logs were not captured"
    assert WEBHOOK_SECRET not in jitbot.output()

    audit = await jitbot.cli("audit")
    assert audit.returncode == 0 and request_id in audit.stdout, audit
    assert WEBHOOK_SECRET not in audit.stdout + audit.stderr
    audit_rows = read_rows(jitbot.db, "SELECT * FROM audit_events")
    assert len(audit_rows) >= 4
    assert not [row for row in audit_rows if WEBHOOK_SECRET in repr(row)]
    assert WEBHOOK_SECRET.encode() not in stored_text(jitbot.db)


# ── logs ────────────────────────────────────────────────────────────────────────────────────────────


async def test_a_timer_driven_revocation_is_not_logged_as_the_approvers_click(slack, webhook, jitbot):
    await jitbot.start()
    message = await request_access(slack, "3s")
    await approve_and_wait_granted(slack, webhook, message)
    await webhook.wait_for(1, "revoke", timeout=15)
    await slack.wait_for_dm("U_ALICE", contains="expired")
    assert await jitbot.terminate() == 0

    records = jitbot.log_records()
    (granted,) = [r for r in records if r.get("event") == "access.granted"]
    (revoked,) = [r for r in records if r.get("event") == "access.revoked"]
    assert granted.get("slack_user") == "U_BOB"  # the click's context is bound while the click is handled
    # The revocation ran on a timer seconds later; naming Bob's click on it misleads an investigation.
    assert "slack_user" not in revoked and "slack_type" not in revoked, revoked
