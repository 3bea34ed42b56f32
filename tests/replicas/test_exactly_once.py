"""Two replicas on one PostgreSQL, each with its own Socket Mode connection, as `bot.py run` builds them.

Clicks land on either replica (the local Slack spreads envelopes as Slack does); decisions stay
exactly-once because the database decides: a compare-and-set status change, and a lease per request
and per access that keeps a second replica from granting or revoking beside the first.
"""

from __future__ import annotations

import asyncio
import collections
from datetime import timedelta

import pytest

from core.models import RequestStatus as S
from tests.e2e.conftest import SECRET_ENV, WEBHOOK_SECRET, webhook_flows
from tests.e2e.flows import APPROVAL_CHANNEL
from tests.e2e.harness import BotLauncher, RunningBot, submit_request
from tests.fakes.clock import FrozenClock
from tests.fakes.webhook_receiver import WebhookReceiver


@pytest.fixture
async def receiver():
    async with WebhookReceiver(secret=WEBHOOK_SECRET) as r:
        yield r


@pytest.fixture
async def replicas(slack, tmp_path, postgres_dsn, receiver, monkeypatch) -> list[RunningBot]:
    """Two bots on one PostgreSQL database, sharing one clock (one world, two processes' worth of bot)."""
    monkeypatch.setenv(SECRET_ENV, WEBHOOK_SECRET)
    launcher = BotLauncher(slack, tmp_path)
    clock = FrozenClock()
    try:
        bots = [await launcher.start(webhook_flows(receiver.url), db=postgres_dsn, clock=clock) for _ in range(2)]
        await slack.wait_connected(2)
        yield bots
    finally:
        await launcher.close()


async def idle(bots: list[RunningBot]) -> None:
    for bot in bots:
        await bot.idle()


async def test_each_replica_holds_its_own_socket_mode_connection_and_both_take_clicks(slack, replicas):
    assert slack.connection_count == 2
    assert all(bot.runtime.claims is not None for bot in replicas)
    assert len({bot.runtime.claims.owner for bot in replicas}) == 2


async def test_two_approvers_clicking_at_once_on_two_replicas_grant_once(slack, replicas, receiver):
    first = replicas[0]
    messages = [
        await first.request("U_ALICE", "db_access", APPROVAL_CHANNEL, target="Prod Admin", reason=f"incident {i}")
        for i in range(6)
    ]
    clicks = [slack.click(message, text="Approve", user=user) for message in messages for user in ("U_BOB", "U_CAROL")]
    results = await asyncio.gather(*clicks)
    await idle(replicas)
    assert all(r.acked for r in results)
    assert len({r.connection_id for r in results}) == 2  # both replicas decided some of them
    granted = await first.engine.requests.list_by_status(S.GRANTED)
    assert len(granted) == len(messages)
    grants = collections.Counter((d.body or {}).get("request_id") for d in receiver.deliveries if d.action == "grant")
    assert grants == collections.Counter({r.id: 1 for r in granted})
    for request in granted:
        approvals = [e for e in await first.audit(request.id) if e.action == "request.approved"]
        assert len(approvals) == 1


async def test_a_request_form_delivered_to_both_replicas_at_once_makes_one_request(slack, replicas):
    first = await submit_request(slack, "U_ALICE", "db_access", target="Prod Admin")
    retries = await asyncio.gather(
        *(slack.redeliver(first, retry_attempt=n, retry_reason="timeout") for n in (1, 2, 3, 1, 2, 3))
    )
    await idle(replicas)
    assert len({r.connection_id for r in [first, *retries]}) == 2  # both replicas got a delivery
    (request,) = await replicas[0].engine.requests.list_by_status(*S)
    assert len(slack.messages_in(APPROVAL_CHANNEL)) == 1
    assert [e.action for e in await replicas[0].audit(request.id)].count("request.created") == 1


async def test_a_due_revocation_runs_once_though_every_replica_sweeps_at_the_same_moment(slack, replicas, receiver):
    first = replicas[0]
    message = await first.request("U_ALICE", "db_access", APPROVAL_CHANNEL, target="Prod Admin", duration="10s")
    await first.approve(message)
    await idle(replicas)
    first.clock.advance(timedelta(seconds=11))
    await asyncio.gather(*(bot.engine.sweep() for bot in replicas for _ in range(3)))
    await idle(replicas)
    (request,) = await first.engine.requests.list_by_status(S.REVOKED)
    assert [d.action for d in receiver.deliveries if (d.body or {}).get("request_id") == request.id] == [
        "grant",
        "revoke",
    ]
    revoked = [e for e in await first.audit(request.id) if e.status_to == "revoked"]
    assert len(revoked) == 1


async def test_metrics_count_the_work_each_replica_claimed(slack, replicas):
    first = replicas[0]
    # Two people, so each approval is a grant of its own (a second request of the same person for the
    # same access would be an extension, which moves an end without taking the access's lease).
    for requester in ("U_ALICE", "U_CAROL"):
        message = await first.request(requester, "db_access", APPROVAL_CHANNEL, target="Prod Admin", reason="n")
        await slack.click(message, text="Approve", user="U_BOB")
        await idle(replicas)  # the grant is done whichever replica took the click
    await idle(replicas)
    claimed: collections.Counter[str] = collections.Counter()
    for bot in replicas:
        await bot.runtime.metrics.refresh()
        registry = bot.runtime.metrics.registry
        for kind in ("request", "access"):
            claimed[kind] += int(registry.get_sample_value("jitbot_replica_claims_total", {"kind": kind}) or 0)
        assert registry.get_sample_value("jitbot_replica_leases_held") == 0  # all work finished, all given back
    # Each approval took its request's lease and each grant its access's (on whichever replica ran it).
    assert claimed["request"] >= 2 and claimed["access"] >= 2
