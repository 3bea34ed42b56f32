"""Notification lanes under pressure: a first post, a DM or a warning is never held up by the slots of
another lane (edits Slack keeps refusing, hooks that take their whole timeout), and a warning waiting
its turn survives a stop."""

from __future__ import annotations

import asyncio
from contextlib import asynccontextmanager
from datetime import timedelta

import pytest

from core.claims import Claims
from core.end_warning import QUEUED_RECHECK
from core.models import RequestStatus as S
from core.ports import RequesterNotice
from storage.db import Store
from storage.leases import LeaseRepo
from tests.core.test_engine import FLOWS, RecordingNotifier
from tests.core.test_grant_notifications import (
    WARNED_FLOWS,
    Channel,
    FastTrack,
    HeldDMNotifier,
    HoldsEdits,
    engine_with,
    granted_and_warning_due,
    let_background_run,
    submitted,
)
from tests.fakes.clock import FrozenClock
from tests.fakes.engine import flows_config

SLOTS = 8  # core.follow_ups.FOLLOW_UP_CONCURRENCY: one more than this is what a shared slot pool would hold up


class EditsRefused(Channel):
    """Slack refusing chat.update (every edit waits for `release`) while chat.postMessage goes through."""

    def __init__(self) -> None:
        super().__init__()
        self.release = asyncio.Event()

    async def publish(self, request):
        if request.message_ts:
            await self.release.wait()
        return await super().publish(request)


class SharedChannel(HoldsEdits, Channel):
    """One approval channel as two replicas' notifiers see it; edits to `held` wait for `release`."""

    def __init__(self, channel: Channel, held: S | None = None) -> None:
        self.messages, self.notices = channel.messages, channel.notices
        self.held = held
        self.release = asyncio.Event()


@asynccontextmanager
async def two_replicas(databases, config, notifiers, clock, **wiring):
    """Two engines on one database, each with its own leases, as replicas run (closed after)."""
    where = databases.where("shared.db")
    stores = [await Store.open(where) for _ in notifiers]
    try:
        engines = []
        for n, (store, notifier) in enumerate(zip(stores, notifiers, strict=True)):
            engine = engine_with(store, config, notifier=notifier, clock=clock, **wiring)
            engine.life.guards.claims = Claims(LeaseRepo(store, f"replica-{n}"))
            engines.append(engine)
        yield engines
    finally:
        for store in stores:
            await store.close()


class OnCallFastTracksCarol:
    """A flow's on_request hook that approves Carol's requests (she is on call) and no one else's."""

    path = "on_call.py"

    def has(self, hook: str) -> bool:
        return hook == "on_request"

    async def call(self, hook, evt, *, timeout):
        return evt.approve("on call") if evt.user.slack_id == "U_CAROL" else None


class SlowAfterRevoke:
    """An after_revoke hook calling a slow outside API: each call takes until `release` (its timeout)."""

    path = "slow_after_revoke.py"

    def __init__(self) -> None:
        self.release = asyncio.Event()

    def has(self, hook: str) -> bool:
        return hook == "after_revoke"

    async def call(self, hook, evt, *, timeout):
        await self.release.wait()


async def posted(channel: Channel, count: int) -> None:
    """Until `count` messages are in the channel (the store may be a PostgreSQL server: its reads take
    real time); TimeoutError after 5 s, as a failure."""
    async with asyncio.timeout(5):
        while len(channel.messages) < count:
            await asyncio.sleep(0.01)


async def ask(engine, who: str):
    draft = await engine.prepare("db", who, "prod", {"duration": "1h"}, timedelta(hours=1))
    return await engine.submit(draft)


async def test_a_fast_tracked_grant_is_posted_to_the_channel_while_slack_refuses_every_edit_slot(tmp_path, store):
    """Slack refuses chat.update for a while, and more "granted" edits wait than there are edit slots.
    Carol, on call, is fast-tracked: her live access must still show up in the approval channel at once
    (a first post is chat.postMessage, which Slack limits apart from edits)."""
    channel = EditsRefused()
    engine = engine_with(
        store, flows_config(tmp_path, FLOWS), notifier=channel, hook_modules={"db": OnCallFastTracksCarol()}
    )
    for i in range(SLOTS):
        await engine.approve((await ask(engine, f"U_R{i}")).id, "U_BOB")
    await let_background_run()
    before = len(channel.messages)
    carol = await ask(engine, "U_CAROL")
    assert carol.status is S.GRANTED and carol.message_ts is None
    await posted(channel, before + 1)
    channel.release.set()
    assert await engine.settle(5) == 0
    assert [statuses[-1] for statuses in channel.messages.values()].count("granted") == SLOTS + 1


async def test_slow_after_revoke_hooks_do_not_keep_carol_from_hearing_her_access_is_granted(tmp_path, store):
    clock, notifier, hooks = FrozenClock(), RecordingNotifier(), SlowAfterRevoke()
    engine = engine_with(
        store, flows_config(tmp_path, FLOWS), notifier=notifier, clock=clock, hook_modules={"db": hooks}
    )
    grants = [await engine.approve((await ask(engine, f"U_R{i}")).id, "U_BOB") for i in range(SLOTS)]
    assert await engine.settle(5) == 0
    clock.set(grants[0].expires_at)
    for grant in grants:
        await engine.revoke(grant.id)
    await let_background_run()  # every after_revoke is now waiting on the slow API
    told = notifier.notices.count(RequesterNotice.GRANTED.value)
    await engine.approve((await ask(engine, "U_CAROL")).id, "U_BOB")
    await let_background_run()
    assert notifier.notices.count(RequesterNotice.GRANTED.value) == told + 1
    assert notifier.notices.count(RequesterNotice.REVOKED.value) == SLOTS  # told before their hooks ran
    hooks.release.set()
    assert await engine.settle(5) == 0


async def test_an_end_warning_waiting_its_turn_when_the_bot_stops_is_sent_after_the_restart(tmp_path, store):
    """Alice's end warning is due while her "granted" DM is still held by Slack, so it waits behind it.
    The bot is stopped before its turn comes. After the restart, with her access still live, she must
    still be warned (once, within a minute): a warning waiting in a stopped process's memory must not be
    lost."""
    config = flows_config(tmp_path, WARNED_FLOWS)
    clock, notifier = FrozenClock(), HeldDMNotifier()
    engine = engine_with(store, config, notifier=notifier, clock=clock)
    granted = await granted_and_warning_due(engine, clock)
    assert await engine.cancel_follow_ups() == 2  # the stop: the held DM and the warning behind it

    after = RecordingNotifier()
    restarted = engine_with(store, config, notifier=after, clock=clock)
    clock.advance(QUEUED_RECHECK)
    await restarted.sweep()
    assert await restarted.settle(5) == 0
    assert after.notices == [RequesterNotice.WARNING.value]
    actions = [e.action for e in await restarted.audit.for_request(granted.id)]
    assert actions.count("access.warned") == 1


async def test_an_end_warning_waiting_its_turn_is_sent_once_however_often_it_is_found_due(tmp_path, store):
    config = flows_config(tmp_path, WARNED_FLOWS)
    clock, notifier = FrozenClock(), HeldDMNotifier()
    engine = engine_with(store, config, notifier=notifier, clock=clock)
    granted = await engine.approve((await submitted(engine)).id, "U_BOB")
    assert granted.warn_at is not None
    clock.set(granted.warn_at)
    await engine.warn(granted.id)  # its timer
    clock.advance(timedelta(minutes=1))
    await engine.sweep()  # a sweep finds it still due, twice
    await engine.sweep()
    notifier.release.set()
    assert await engine.settle(5) == 0
    assert notifier.notices.count(RequesterNotice.WARNING.value) == 1
    assert [e.action for e in await engine.audit.for_request(granted.id)].count("access.warned") == 1


@pytest.mark.parametrize("then", ["a_sends_it", "slack_holds_the_dm_past_the_recheck", "a_stops_and_b_sends_it"])
async def test_with_replicas_an_end_warning_waiting_behind_one_replicas_dm_is_not_sent_first_by_another(
    tmp_path, databases, then
):
    """Replica A granted Alice's access and Slack holds its "granted" DM; her end warning falls due and
    waits behind it on A. Replica B's sweep must leave it to A, or Alice would be told her access ends
    before she is told she has it, however long Slack holds the DM. If A stops first, B sends it (within
    a minute)."""
    config = flows_config(tmp_path, WARNED_FLOWS)
    clock, held, told_by_b = FrozenClock(), HeldDMNotifier(), RecordingNotifier()
    async with two_replicas(databases, config, [held, told_by_b], clock) as (a, b):
        granted = await a.approve((await submitted(a)).id, "U_BOB")
        assert granted.warn_at is not None
        clock.set(granted.warn_at)
        await a.warn(granted.id)  # A's timer: queued behind the held DM
        await let_background_run()
        # Every replica polls for due work twice a second: until its recheck time, the waiting warning is
        # not due for them (no lock or lease touched for it per poll).
        assert await b.requests.list_due_warnings(clock.now()) == []
        await b.sweep()
        assert await b.settle(5) == 0
        assert told_by_b.notices == []
        if then == "slack_holds_the_dm_past_the_recheck":
            clock.advance(QUEUED_RECHECK)  # due again in the row; B's poll comes before A's
            await b.sweep()
            assert await b.settle(5) == 0
            assert told_by_b.notices == []
        if then == "a_stops_and_b_sends_it":
            await a.cancel_follow_ups()  # A's stop: its owed DMs are dropped, its leases given back
            await a.life.guards.claims.stop()
            await b.sweep()
            assert told_by_b.notices == []
            clock.advance(QUEUED_RECHECK)
            await b.sweep()
            assert await b.settle(5) == 0
            assert told_by_b.notices == [RequesterNotice.WARNING.value]
        else:
            held.release.set()
            assert await a.settle(5) == 0
            assert held.notices[-2:] == [RequesterNotice.GRANTED.value, RequesterNotice.WARNING.value]
        actions = [e.action for e in await a.audit.for_request(granted.id)]
        assert actions.count("access.warned") == 1


async def test_with_replicas_a_granted_edit_slack_held_back_does_not_land_over_the_revoked_one(tmp_path, databases):
    """Replica A grants Alice's access; Slack holds back its "granted" edit. Alice ends her access from
    her DM, on replica B, which edits the message to "revoked". When A's edit finally lands, the
    channel must not be left saying her access is live: A looks at the row again and edits again."""
    channel = Channel()
    a_channel, b_channel = SharedChannel(channel, held=S.GRANTED), SharedChannel(channel)
    config, clock = flows_config(tmp_path, FLOWS), FrozenClock()
    async with two_replicas(databases, config, [a_channel, b_channel], clock) as (a, b):
        granted = await a.approve((await submitted(a)).id, "U_BOB")
        await let_background_run()
        assert (await b.revoke_now(granted.id, "U_ALICE")).status is S.REVOKED
        assert await b.settle(5) == 0
        a_channel.release.set()
        assert await a.settle(5) == 0
        [shown] = channel.messages.values()
        assert shown[-1] == "revoked"


async def test_with_replicas_a_fast_tracked_first_post_held_back_does_not_stay_granted_after_a_revoke(
    tmp_path, databases
):
    """Replica A fast-tracks Alice; Slack holds back the first post of her grant. She ends the access on
    replica B, which finds no message yet and posts one saying revoked. When A's post lands, it must not
    be left saying "granted" with a live Revoke button: A compares the row with what it sent."""
    channel = Channel()
    a_channel, b_channel = SharedChannel(channel, held=S.GRANTED), SharedChannel(channel)
    config, clock = flows_config(tmp_path, FLOWS), FrozenClock()
    hooks = {"db": FastTrack()}
    async with two_replicas(databases, config, [a_channel, b_channel], clock, hook_modules=hooks) as (a, b):
        granted = await submitted(a)
        assert granted.status is S.GRANTED and granted.message_ts is None
        await let_background_run()
        assert (await b.revoke_now(granted.id, "U_ALICE")).status is S.REVOKED
        assert await b.settle(5) == 0
        a_channel.release.set()
        assert await a.settle(5) == 0
        assert [shown[-1] for shown in channel.messages.values()] == ["revoked", "revoked"]


async def test_with_replicas_an_edit_queued_behind_a_held_one_in_the_same_replica_is_made_once(tmp_path, databases):
    """On replica A the "granted" edit is held and Alice's Revoke now (also on A) queues its edit behind
    it. When Slack lets edits through, the message shows revoked after one edit, not two: while
    throttled, every edit counts."""
    channel = Channel()
    a_channel, b_channel = SharedChannel(channel, held=S.GRANTED), SharedChannel(channel)
    config, clock = flows_config(tmp_path, FLOWS), FrozenClock()
    async with two_replicas(databases, config, [a_channel, b_channel], clock) as (a, _):
        granted = await a.approve((await submitted(a)).id, "U_BOB")
        await let_background_run()
        assert (await a.revoke_now(granted.id, "U_ALICE")).status is S.REVOKED
        a_channel.release.set()
        assert await a.settle(5) == 0
        [shown] = channel.messages.values()
        assert shown == ["pending", "granted", "revoked"]
