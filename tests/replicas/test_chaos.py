"""Chaos: three `bot.py run` replicas on one PostgreSQL, killed with SIGKILL at random and restarted,
while 100 grants of a few seconds run and 50 approvers click at once (every request clicked by two).

What must hold whatever was killed when: no request granted twice (the receiver carried out at most
one grant per request; a repeat after a takeover is a duplicate it recognises; none only when the
grant was taken back as in doubt, its window having ended before the takeover), no revocation lost
(every request ends revoked and nothing is still held), none later than 2 s after its end, and
every status change in the audit trail exactly once, and the trail's hash chain verifies with no
gap (replicas append to it side by side).
"""

from __future__ import annotations

import asyncio
import collections
import random
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import psycopg
import pytest

from audit_cli import verify
from sandbox.slack import AckTimeout, SlackEmulator
from storage import Store
from tests.e2e.botprocess import ArrivalLog, BotProcess, db_time
from tests.e2e.flows import PROD_ADMIN, db_access_flow, flows_file
from tests.e2e.harness import submit_request
from tests.fakes.webhook_receiver import WebhookReceiver

pytestmark = pytest.mark.slow

WEBHOOK_SECRET = "whsec-chaos-51f0e2d8c7a6b"
SECRET_ENV = "JITBOT_TEST_WEBHOOK_SECRET"
REQUESTS = 100
APPROVERS = [f"U_APPROVER{n:02d}" for n in range(50)]
REQUESTERS = [f"U_REQUESTER{n:03d}" for n in range(REQUESTS)]  # one grant each: 100 accesses, not one
LATE = timedelta(seconds=2)
LEASE_SECONDS = "1"  # a killed replica's work is taken over after 1 s without a heartbeat
EXPECTED_PATH = [(None, "pending"), ("pending", "approved"), ("approved", "granted"), ("granted", "revoked")]


@pytest.fixture
async def webhook() -> AsyncIterator[WebhookReceiver]:
    async with WebhookReceiver(secret=WEBHOOK_SECRET, deliveries=ArrivalLog()) as receiver:
        yield receiver


@pytest.fixture
async def replicas(
    slack: SlackEmulator, webhook: WebhookReceiver, tmp_path: Path, postgres_dsn: str
) -> AsyncIterator[list[BotProcess]]:
    for user in [*APPROVERS, *REQUESTERS]:
        slack.add_user(user, email=f"{user.lower()}@example.com", name=user.lower())
    slack.add_usergroup("S_CHAOS", handle="chaos", users=APPROVERS)
    config = tmp_path / "flows.yaml"
    config.write_text(
        flows_file(
            db_access_flow(
                webhook.url, "3s", secret_env=SECRET_ENV, targets=(PROD_ADMIN,), approvers={"usergroups": ["S_CHAOS"]}
            )
        )
    )
    bots = [
        BotProcess(
            slack,
            config=config,
            db=postgres_dsn,  # type: ignore[arg-type]  # JITBOT_DB takes a URL as well as a file
            logs=tmp_path / f"replica-{n}",
            extra_env={SECRET_ENV: WEBHOOK_SECRET, "JITBOT_LEASE_SECONDS": LEASE_SECONDS},
        )
        for n in range(3)
    ]
    try:
        yield bots
    finally:
        for bot in bots:
            await bot.kill()


async def click_until_answered(slack: SlackEmulator, message, user: str) -> None:
    """A person clicks Approve until the message shows the request decided: if the replica that got the
    click died before answering (Slack shows an error) or after acking but before deciding (the message
    never changes), they click again, as anyone would."""

    def decided() -> bool:
        current = slack.message(message.channel, message.ts)
        return not any(b["text"]["text"] == "Approve" for b in current.buttons)

    for _ in range(20):
        if decided():
            return
        try:
            await slack.click(message, text="Approve", user=user)
        except AckTimeout:  # DeliveryLost included: Slack would show an error, and they would retry
            await asyncio.sleep(0.2)
            continue
        try:
            await slack.wait_for(decided, timeout=3, description="the request decided")
            return
        except AssertionError:  # WaitTimeout: still undecided, so the click was lost with its replica
            continue
    raise AssertionError(f"{user}'s click never decided the request")


async def chaos(replicas: list[BotProcess], rng: random.Random, stop: asyncio.Event, kills: list[int]) -> None:
    """Kill one replica at random every 0.5–2 s, and start it again a moment later."""
    while not stop.is_set():
        try:
            await asyncio.wait_for(stop.wait(), rng.uniform(0.5, 2.0))
            return
        except TimeoutError:
            pass
        victim = rng.choice([bot for bot in replicas if bot.running])
        await victim.kill()
        kills.append(replicas.index(victim))
        await asyncio.sleep(rng.uniform(0.2, 1.0))
        await victim.start(timeout=30)


def audit_paths(dsn: str) -> dict[str, list[tuple[str | None, str | None]]]:
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            "SELECT request_id, status_from, status_to FROM audit_events WHERE status_to IS NOT NULL "
            "AND status_from IS DISTINCT FROM status_to ORDER BY id"
        ).fetchall()
        duplicates = conn.execute("SELECT count(*) - count(DISTINCT event_id) FROM audit_events").fetchone()
    assert duplicates == (0,)
    paths: dict[str, list[tuple[str | None, str | None]]] = collections.defaultdict(list)
    for request_id, status_from, status_to in rows:
        paths[request_id].append((status_from, status_to))
    return paths


def in_doubt(dsn: str) -> set[str]:
    with psycopg.connect(dsn) as conn:
        return {r for (r,) in conn.execute("SELECT request_id FROM audit_events WHERE action = 'grant.in_doubt'")}


def stored(dsn: str) -> dict[str, tuple[str, str]]:
    with psycopg.connect(dsn) as conn:
        return {i: (s, e) for i, s, e in conn.execute("SELECT id, status, expires_at FROM requests")}


async def test_three_replicas_killed_at_random_grant_once_and_revoke_everything_on_time(
    slack: SlackEmulator, webhook: WebhookReceiver, replicas: list[BotProcess], postgres_dsn: str
):
    slack.expect_unacked()  # clicks that went to a replica as it was killed
    rng = random.Random(15)
    for bot in replicas:
        await bot.start(timeout=30)
    await slack.wait_connected(3, timeout=30)
    for n, requester in enumerate(REQUESTERS):
        await submit_request(slack, requester, "db_access", target="Prod Admin", duration="3s", reason=f"chaos {n}")
    await slack.wait_for(lambda: len(slack.messages_in("C_APPROVALS")) == REQUESTS, timeout=30)
    messages = slack.messages_in("C_APPROVALS")

    stop, kills = asyncio.Event(), []
    chaos_task = asyncio.create_task(chaos(replicas, rng, stop, kills))
    clicks = [
        click_until_answered(slack, message, APPROVERS[(2 * i + k) % len(APPROVERS)])
        for i, message in enumerate(messages)
        for k in range(2)
    ]
    gate = asyncio.Semaphore(len(APPROVERS))  # 50 people clicking at once

    async def one(click) -> None:
        async with gate:
            await click

    await asyncio.gather(*(one(c) for c in clicks))
    await asyncio.sleep(3)  # grants of 3 s run out while replicas keep dying
    stop.set()
    await chaos_task
    assert kills, "the chaos never killed a replica"

    def settled() -> bool:
        rows = stored(postgres_dsn)
        return len(rows) == REQUESTS and all(status == "revoked" for status, _ in rows.values())

    for _ in range(60):
        if settled():
            break
        await asyncio.sleep(0.5)
    rows = stored(postgres_dsn)
    assert collections.Counter(s for s, _ in rows.values()) == {"revoked": REQUESTS}

    applied = collections.Counter(
        d.body["request_id"] for d in webhook.deliveries if d.action == "grant" and d.status == 200 and not d.duplicate
    )
    assert set(applied.values()) <= {1}, "a request was granted twice"
    # A replica killed between recording an approval and the grant reaching the target leaves the
    # row `approved`; when it is taken over after the grant's end, the grant is never made late: it
    # is revoked as in doubt instead. Only then may a request have no grant at the receiver.
    assert set(rows) - set(applied) <= in_doubt(postgres_dsn), "a request was never granted nor taken back"
    assert webhook.grants == set() or not any(webhook.is_held(r) for r in rows), "a revocation was lost"
    late = []
    for request_id, (_, expires_at) in rows.items():
        revokes = [d for d in webhook.deliveries if d.action == "revoke" and d.body["request_id"] == request_id]
        first = min(webhook.deliveries.when(d) for d in revokes)
        if first - db_time(expires_at) > LATE:
            late.append((request_id, (first - db_time(expires_at)).total_seconds()))
        assert first >= db_time(expires_at), f"{request_id} revoked before its end"
    assert late == [], f"revoked more than 2 s late: {late}"
    paths = audit_paths(postgres_dsn)
    assert {request_id: paths[request_id] for request_id in rows} == {r: EXPECTED_PATH for r in rows}
    store = await Store.open(postgres_dsn)
    try:
        chain = await verify(store, [])
    finally:
        await store.close()
    assert (chain.problem, chain.checked) == (None, chain.head_seq)
