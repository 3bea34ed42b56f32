"""SIGTERM mid-burst (docs/operations.md): `bot.py run` stops taking envelopes, finishes what it acked,
exits 0 within 10 s, and the next start finishes the rest; no approval is lost or granted twice.

A real subprocess against the emulator and a webhook receiver that answers each grant slowly, so
the SIGTERM lands while grants are in flight and clicks are still arriving.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from sandbox.slack import EnvelopeResult, Message, SlackEmulator
from tests.databases import TestDatabases
from tests.e2e.botprocess import ArrivalLog, BotProcess, read_rows
from tests.e2e.flows import PROD_ADMIN, SECOPS, db_access_flow, flows_file
from tests.e2e.harness import submit_request
from tests.fakes.webhook_receiver import WebhookReceiver

pytestmark = pytest.mark.slow

WEBHOOK_SECRET = "whsec-sigterm-2f7a9c4e1b6d"
SECRET_ENV = "JITBOT_TEST_WEBHOOK_SECRET"
REQUESTS = 24
GRANT_ANSWER_SECONDS = 0.5
CLICK_GAP_SECONDS = 0.05


@pytest.fixture
async def webhook() -> AsyncIterator[WebhookReceiver]:
    async with WebhookReceiver(secret=WEBHOOK_SECRET, deliveries=ArrivalLog()) as receiver:
        yield receiver


@pytest.fixture
async def jitbot(
    slack: SlackEmulator, webhook: WebhookReceiver, tmp_path: Path, databases: TestDatabases
) -> AsyncIterator[BotProcess]:
    config = tmp_path / "flows.yaml"
    config.write_text(
        flows_file(db_access_flow(webhook.url, "1h", secret_env=SECRET_ENV, targets=(PROD_ADMIN,), approvers=SECOPS))
    )
    bot = BotProcess(
        slack,
        config=config,
        db=databases.where(),
        logs=tmp_path / "logs",
        extra_env={SECRET_ENV: WEBHOOK_SECRET},
    )
    try:
        yield bot
    finally:
        await bot.kill()


async def pending_requests(slack: SlackEmulator, count: int = REQUESTS) -> list[Message]:
    """One request each from `count` people, posted and waiting for approval."""
    for i in range(count):
        slack.add_user(f"U_REQ{i:02d}", email=f"req{i}@example.com")
    for i in range(count):
        await submit_request(slack, f"U_REQ{i:02d}", "db_access", target="Prod Admin", duration="1h", timeout=10)
    await slack.wait_for(
        lambda: len(slack.messages_in("C_APPROVALS")) >= count, timeout=10, description="every request posted"
    )
    return slack.messages_in("C_APPROVALS")


def request_ids(db: Path | str) -> dict[str, str]:
    """Message ts → request id, read from the database."""
    rows = read_rows(db, "SELECT message_ts, id FROM requests WHERE message_ts IS NOT NULL")
    return {row["message_ts"]: row["id"] for row in rows}


async def recorded(db: Path | str, count: int = REQUESTS, timeout: float = 10.0) -> dict[str, str]:
    """Message ts → request id once every request's message is recorded (the bot writes it after posting)."""
    deadline = time.monotonic() + timeout
    while len(ids := request_ids(db)) < count:
        assert time.monotonic() < deadline, f"only {len(ids)} of {count} messages recorded"
        await asyncio.sleep(0.05)  # another process's database: nothing to wait on but the file
    return ids


def answered_grants(webhook: WebhookReceiver) -> list:
    """Grants the receiver carried out (a repeat of one is answered as a duplicate; one still held is not yet)."""
    return [d for d in webhook.accepted("grant") if d.status == 200]


async def click(slack: SlackEmulator, message: Message, user: str) -> EnvelopeResult | None:
    """Approve; None when the bot did not ack (it was stopping) or had no connection to send it on."""
    try:
        return await slack.click(message, text="Approve", user=user)
    except Exception:
        return None


async def test_sigterm_mid_burst_exits_cleanly_and_loses_no_approval(slack, webhook, jitbot):
    await jitbot.start()
    messages = await pending_requests(slack)
    request_of = await recorded(jitbot.db)
    webhook.set_latency(GRANT_ANSWER_SECONDS)

    results: dict[str, EnvelopeResult | None] = {}

    async def burst() -> None:
        """Bob approves one request after another, until the bot has no connection left to send to."""
        for message in messages:
            if slack.connection_count == 0:
                break
            results[message.ts] = await click(slack, message, "U_BOB")
            await asyncio.sleep(CLICK_GAP_SECONDS)

    clicking = asyncio.create_task(burst())
    await webhook.deliveries.wait_arrived(REQUESTS // 3, "grant", timeout=10)  # grants are in flight
    started = time.monotonic()
    assert await jitbot.terminate(timeout=10) == 0
    stopped_in = time.monotonic() - started
    await clicking
    assert stopped_in < 10

    # Every envelope the bot acked was processed before it exited: its approval is recorded.
    acked = [ts for ts, result in results.items() if result is not None and result.acked]
    assert 0 < len(acked) < REQUESTS, "the SIGTERM did not land mid-burst: the test proves nothing"
    for ts in acked:
        assert jitbot.row(request_of[ts])["status"] in ("approved", "granted"), jitbot.output()
    assert any(r["event"] == "jitbot.stopped" for r in jitbot.log_records())

    # The next start finishes what was left; the clicks it never acked come again, as Slack retries them.
    await jitbot.start()
    sent = {
        e.envelope["payload"]["container"]["message_ts"]: e
        for e in slack.envelopes
        if "container" in e.envelope["payload"]
    }
    for message in messages:
        if message.ts in acked:
            continue
        if message.ts in sent:  # Slack retries an envelope that was not acked
            retry = await slack.redeliver(sent[message.ts])
        else:  # it never left: the approver clicks again
            retry = await slack.click(message, text="Approve", user="U_BOB")
        assert retry.acked
    await slack.wait_for(
        lambda: all(jitbot.row(request_of[m.ts])["status"] == "granted" for m in messages),
        timeout=20,
        description="every approved request granted",
    )
    per_request = Counter(d.body["request_id"] for d in answered_grants(webhook))
    assert per_request == Counter({request_id: 1 for request_id in request_of.values()})
    assert await jitbot.terminate(timeout=10) == 0
    if any(not e.acked for e in slack.envelopes):
        slack.expect_unacked()


async def test_a_grant_still_running_when_the_stop_runs_out_of_time_is_left_approved_and_granted_by_the_next_start(
    slack, webhook, jitbot
):
    await jitbot.start()
    (message,) = [m for m in await pending_requests(slack, count=1)]
    (request_id,) = (await recorded(jitbot.db, count=1)).values()
    webhook.set_latency(60.0)  # the target system hangs far beyond the stop's grace
    assert (await click(slack, message, "U_BOB")).acked
    await webhook.deliveries.wait_arrived(1, "grant", timeout=10)

    started = time.monotonic()
    assert await jitbot.terminate(timeout=10) == 0
    assert time.monotonic() - started < 10
    # Not failed, not granted: the grant's outcome is unknown, so the row waits for the next start.
    assert jitbot.row(request_id)["status"] == "approved", jitbot.output()
    assert any(r["event"] == "stop.unfinished" for r in jitbot.log_records())

    webhook.set_latency(0.0)
    await jitbot.start()
    await slack.wait_for_message(
        "C_APPROVALS", contains="granted until", where=lambda m: m.ts == message.ts, timeout=10
    )
    assert jitbot.row(request_id)["status"] == "granted"
    assert [d.body["request_id"] for d in answered_grants(webhook)] == [request_id]
    audit = await jitbot.cli("audit", "--request", request_id)
    assert [e["action"] for e in audit.json_lines()].count("access.granted") == 1
    assert await jitbot.terminate(timeout=10) == 0
