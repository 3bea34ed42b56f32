"""Several replicas of one app, each with its own Socket Mode connection, as Slack serves them."""

from __future__ import annotations

import asyncio
import collections

import pytest

from sandbox.slack import DeliveryLost, SlackEmulator
from sandbox.slack.socket_mode import MAX_CONNECTIONS
from tests.emulator.helpers import BoltBot, RawBot


def counter(index: int, handled: collections.Counter[str], by_replica: collections.Counter[int]):
    """A /sym listener for replica `index` that counts what it handled."""

    async def count(ack, body):
        await ack()
        handled[body["text"]] += 1
        by_replica[index] += 1

    return count


async def test_envelopes_are_spread_over_three_replicas_and_each_is_handled_by_exactly_one(slack: SlackEmulator):
    replicas = [BoltBot(slack) for _ in range(3)]  # three processes' worth of apps: nothing shared
    handled: collections.Counter[str] = collections.Counter()
    by_replica: collections.Counter[int] = collections.Counter()
    try:
        for index, replica in enumerate(replicas):
            replica.app.command("/sym")(counter(index, handled, by_replica))
            await replica.connect()
        await slack.wait_connected(3)
        results = await asyncio.gather(*(slack.slash_command(user="U_ALICE", text=str(i)) for i in range(60)))
    finally:
        for replica in replicas:
            await replica.close()
    assert all(r.acked for r in results)
    assert handled == collections.Counter({str(i): 1 for i in range(60)})
    assert sorted(by_replica) == [0, 1, 2]  # every replica got work (all 60 on two of three: ~1e-10)


async def test_the_same_seed_spreads_envelopes_the_same_way():
    async def spread(seed: int) -> list[int]:
        emu = SlackEmulator(seed=seed)
        emu.add_user("U_ALICE", email="alice@example.com")
        await emu.start()
        bots = [RawBot(emu) for _ in range(3)]
        try:
            for bot in bots:
                await bot.connect()
            first = min(c.id for c in emu.socket.usable())
            results = [await emu.slash_command(user="U_ALICE", text=str(i)) for i in range(12)]
            return [r.connection_id - first for r in results]  # type: ignore[operator]
        finally:
            for bot in bots:
                await bot.close()
            await emu.stop()

    assert await spread(7) == await spread(7)


async def test_a_connection_past_slacks_limit_of_ten_is_told_too_many_websockets_and_gets_nothing(
    slack: SlackEmulator,
):
    bots = [RawBot(slack) for _ in range(MAX_CONNECTIONS + 1)]
    try:
        for bot in bots[:MAX_CONNECTIONS]:
            await bot.connect()
        extra = bots[MAX_CONNECTIONS]
        hello = await extra.connect()
        await slack.wait_for(lambda: extra.frames, description="the disconnect frame")
        assert hello["type"] == "hello"
        assert extra.frames[0]["type"] == "disconnect" and extra.frames[0]["reason"] == "too_many_websockets"
        assert slack.connection_count == MAX_CONNECTIONS
        results = [await slack.slash_command(user="U_ALICE", text=str(i)) for i in range(20)]
        assert all(r.acked for r in results)
        assert not [f for f in extra.frames if "envelope_id" in f]
    finally:
        for bot in bots:
            await bot.close()


async def test_an_envelope_whose_replica_dies_before_acking_is_lost_at_once(slack: SlackEmulator, raw_bot: RawBot):
    slack.ack_timeout = 30  # the failure must come from the closed socket, not from the deadline
    raw_bot.ack = False
    delivery = asyncio.create_task(slack.slash_command(user="U_ALICE"))
    await slack.wait_for(lambda: any("envelope_id" in f for f in raw_bot.frames), description="the envelope")
    transport = raw_bot._ws._response.connection.transport  # type: ignore[union-attr]
    transport.abort()  # what kill -9 does to the TCP connection
    with pytest.raises(DeliveryLost, match="/sym by U_ALICE .* was lost: connection .* closed before acking"):
        await asyncio.wait_for(delivery, 5)
    assert [p.kind for p in slack.problems] == ["unacked"]
    slack.expect_unacked()


async def test_an_ack_from_a_surviving_replica_still_counts_when_another_dies(slack: SlackEmulator):
    survivor, doomed = RawBot(slack), RawBot(slack)
    try:
        await survivor.connect()
        await doomed.connect()
        await slack.wait_connected(2)
        doomed_ws = doomed._ws
        assert doomed_ws is not None
        await doomed_ws.close()
        await slack.wait_for(lambda: slack.connection_count == 1, description="one connection left")
        results = [await slack.slash_command(user="U_ALICE", text=str(i)) for i in range(5)]
        assert all(r.acked for r in results)
        assert {r.connection_id for r in results} == {c.id for c in slack.socket.usable()}
    finally:
        await survivor.close()
        await doomed.close()
