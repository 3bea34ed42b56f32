"""Real `bot.py run` replicas on one PostgreSQL, killed with SIGKILL: the others take the work over.

Each replica is a subprocess with its own Socket Mode connection to the local Slack; the grant and
revoke webhooks go to one receiver. The replica acting on a request holds its lease in the database
(core/claims.py); a replica killed mid-revocation stops renewing it, and within the lease's lifetime
(LEASE_TTL) plus one due-work poll another replica revokes again (idempotent at the receiver).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest

from core.claims import LEASE_TTL
from sandbox.slack import SlackEmulator
from tests.e2e.botprocess import ArrivalLog, BotProcess, db_time
from tests.e2e.flows import PROD_ADMIN, SECOPS, db_access_flow, flows_file
from tests.e2e.harness import submit_request
from tests.fakes.webhook_receiver import WebhookReceiver

pytestmark = pytest.mark.slow

WEBHOOK_SECRET = "whsec-replicas-0c4e1f2a9b7d"
SECRET_ENV = "JITBOT_TEST_WEBHOOK_SECRET"
TAKEOVER = timedelta(seconds=LEASE_TTL + 3)  # lease lifetime, one due-work poll, and the process's own pace


@pytest.fixture
async def webhook() -> AsyncIterator[WebhookReceiver]:
    async with WebhookReceiver(secret=WEBHOOK_SECRET, deliveries=ArrivalLog()) as receiver:
        yield receiver


@pytest.fixture
async def replicas(
    slack: SlackEmulator, webhook: WebhookReceiver, tmp_path: Path, postgres_dsn: str
) -> AsyncIterator[list[BotProcess]]:
    """Two not-yet-started `bot.py run` replicas on one PostgreSQL database; killed at the end."""
    config = tmp_path / "flows.yaml"
    config.write_text(
        flows_file(
            db_access_flow(webhook.url, "3s", "5s", secret_env=SECRET_ENV, targets=(PROD_ADMIN,), approvers=SECOPS)
        )
    )
    bots = [
        BotProcess(
            slack,
            config=config,
            db=postgres_dsn,  # type: ignore[arg-type]  # JITBOT_DB takes a URL as well as a file
            logs=tmp_path / f"replica-{n}",
            extra_env={SECRET_ENV: WEBHOOK_SECRET},
        )
        for n in range(2)
    ]
    try:
        yield bots
    finally:
        for bot in bots:
            await bot.kill()


def row(dsn: str, request_id: str) -> dict:
    with psycopg.connect(dsn) as conn:
        cursor = conn.execute("SELECT status, expires_at FROM requests WHERE id = %s", [request_id])
        status, expires_at = cursor.fetchone()  # type: ignore[misc]
    return {"status": status, "expires_at": db_time(expires_at)}


def lease_owner_pid(dsn: str, request_id: str) -> int | None:
    """The pid of the replica holding the request's lease (owners are host:pid:random)."""
    with psycopg.connect(dsn) as conn:
        found = conn.execute("SELECT owner FROM leases WHERE name = %s", [f"request:{request_id}"]).fetchone()
    return int(found[0].split(":")[1]) if found else None


def audit_path(dsn: str, request_id: str) -> list[tuple[str | None, str | None]]:
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            "SELECT status_from, status_to FROM audit_events WHERE request_id = %s AND status_to IS NOT NULL "
            "AND status_from IS DISTINCT FROM status_to ORDER BY id",
            [request_id],
        ).fetchall()
    return [(a, b) for a, b in rows]


async def test_a_replica_killed_mid_revocation_is_taken_over_within_seconds_and_revoked_once(
    slack: SlackEmulator, webhook: WebhookReceiver, replicas: list[BotProcess], postgres_dsn: str
):
    for bot in replicas:
        await bot.start()
    await slack.wait_connected(2)
    await submit_request(slack, "U_ALICE", "db_access", target="Prod Admin", duration="3s", timeout=10)
    message = await slack.wait_for(
        lambda: next(iter(slack.messages_in("C_APPROVALS")), None), timeout=10, description="the request"
    )
    await slack.click(message, text="Approve", user="U_BOB")
    (grant,) = await webhook.wait_for(1, "grant", timeout=10)
    request_id = grant.body["request_id"]

    webhook.set_latency(30)  # the revocation will be in flight when its replica dies
    (in_flight,) = await webhook.deliveries.wait_arrived(1, "revoke", timeout=15)
    holder_pid = lease_owner_pid(postgres_dsn, request_id)
    holder = next(bot for bot in replicas if bot.process is not None and bot.process.pid == holder_pid)
    survivor = next(bot for bot in replicas if bot is not holder)
    await holder.kill()
    killed_at = datetime.now(UTC)
    webhook.set_latency(0)
    assert row(postgres_dsn, request_id)["status"] == "granted"

    (_, again) = await webhook.deliveries.wait_arrived(2, "revoke", timeout=TAKEOVER.total_seconds() + 5)
    taken_over_after = webhook.deliveries.when(again) - killed_at
    assert taken_over_after <= TAKEOVER, f"taken over after {taken_over_after.total_seconds():.1f}s"
    await slack.wait_for(
        lambda: row(postgres_dsn, request_id)["status"] == "revoked", timeout=10, description="the row revoked"
    )
    assert not webhook.is_held(request_id)
    assert audit_path(postgres_dsn, request_id) == [
        (None, "pending"),
        ("pending", "approved"),
        ("approved", "granted"),
        ("granted", "revoked"),
    ]
    assert survivor.running
    await asyncio.sleep(0)
