"""A grant's message edit, DM and after_grant follow it in the background, behind the clicks still being decided;
a revocation's notifications follow it too. Edits and DMs are in order each, and a DM (the end warning too) or
hook never waits for a throttled edit."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

from core.errors import NotAllowed
from core.models import RequestStatus as S
from core.ports import RequesterNotice, UserInfo
from tests.core.test_engine import FLOWS, Directory, RecordingNotifier
from tests.fakes.clock import FrozenClock
from tests.fakes.engine import build_engine, flows_config
from tests.fakes.strategy import FakeStrategy


class HoldsEdits:
    """Mixed into a notifier: a post or edit showing `held` waits until `release` is set (Slack refusing it)."""

    held: S | None
    release: asyncio.Event

    async def publish(self, request):
        if request.status is self.held:
            await self.release.wait()
        return await super().publish(request)


class HeldNotifier(HoldsEdits, RecordingNotifier):
    """Records like RecordingNotifier; an edit to `held` (granted unless said) waits until `release` is set."""

    def __init__(self, held: S = S.GRANTED) -> None:
        super().__init__()
        self.held = held
        self.release = asyncio.Event()


class HeldDMNotifier(RecordingNotifier):
    """Records like RecordingNotifier; the "granted" DM waits until `release` is set (Slack throttling
    chat.postMessage)."""

    def __init__(self) -> None:
        super().__init__()
        self.release = asyncio.Event()

    async def notify_requester(self, request, notice, detail=None):
        if notice is RequesterNotice.GRANTED:
            await self.release.wait()
        return await super().notify_requester(request, notice, detail)


@pytest.fixture
async def engine_and_notifier(tmp_path, store):
    notifier = HeldNotifier()
    return engine_with(store, flows_config(tmp_path, FLOWS), notifier=notifier), notifier


def engine_with(store, config, *, notifier=None, directory=None, clock=None, **wiring):
    """An engine on `store` with the fake strategy; the rest from the test engine's defaults."""
    return build_engine(
        store,
        config,
        strategies={"db": FakeStrategy()},
        notifier=notifier or RecordingNotifier(),
        directory=directory or Directory(),
        clock=clock or FrozenClock(),
        **wiring,
    )


async def submitted(engine):
    draft = await engine.prepare("db", "U_ALICE", "prod", {"duration": "1h"}, timedelta(hours=1))
    return await engine.submit(draft)


async def granted_and_warning_due(engine, clock):
    """Alice's request, approved by Bob; the clock moved to its end warning, which its timer then tries to send."""
    granted = await engine.approve((await submitted(engine)).id, "U_BOB")
    assert granted.warn_at is not None
    clock.set(granted.warn_at)
    await engine.warn(granted.id)
    await let_background_run()
    return granted


async def let_background_run() -> None:
    for _ in range(20):
        await asyncio.sleep(0)


async def test_an_approval_returns_granted_and_its_message_and_dm_follow_while_no_click_is_being_decided(
    engine_and_notifier,
):
    engine, notifier = engine_and_notifier
    notifier.release.set()
    request = await submitted(engine)
    granted = await engine.approve(request.id, "U_BOB")
    assert granted.status is S.GRANTED
    assert await engine.settle(5) == 0
    assert notifier.published == [S.PENDING, S.GRANTED]
    assert notifier.notices[-1] == RequesterNotice.GRANTED.value


class AfterGrant:
    """A flow's hooks module with only after_grant (say, a page to the on-call channel); it records its calls."""

    path = "after_grant.py"

    def __init__(self) -> None:
        self.called: list[str] = []
        self.seen = asyncio.Event()

    def has(self, hook: str) -> bool:
        return hook == "after_grant"

    async def call(self, hook, evt, *, timeout):
        self.called.append(evt.request_id)
        self.seen.set()


async def test_while_slack_throttles_the_granted_edit_the_requester_is_told_and_after_grant_runs(tmp_path, store):
    """chat.update and chat.postMessage are rate-limited apart: an edit Slack keeps refusing for minutes
    must not keep Alice waiting for the DM that says she has access, nor hold up the after_grant hook."""
    config = flows_config(tmp_path, FLOWS)
    notifier, hooks = HeldNotifier(), AfterGrant()  # the "granted" edit is held until `release`
    engine = engine_with(store, config, notifier=notifier, hook_modules={"db": hooks})
    request = await submitted(engine)
    granted = await engine.approve(request.id, "U_BOB")
    await asyncio.wait_for(hooks.seen.wait(), 5)  # the hook ran while the edit is still held
    assert notifier.notices == [RequesterNotice.SUBMITTED.value, RequesterNotice.GRANTED.value]
    assert hooks.called == [granted.id]
    assert notifier.published == [S.PENDING]  # the edit is still owed
    notifier.release.set()
    assert await engine.settle(5) == 0
    assert notifier.published == [S.PENDING, S.GRANTED]
    assert hooks.called == [granted.id]  # once


class AfterRevoke(AfterGrant):
    """A flow's hooks module with only after_revoke; it records its calls."""

    path = "after_revoke.py"

    def has(self, hook: str) -> bool:
        return hook == "after_revoke"


async def test_while_slack_throttles_the_revoked_edit_the_requester_is_told_and_after_revoke_runs(tmp_path, store):
    config = flows_config(tmp_path, FLOWS)
    clock, notifier, hooks = FrozenClock(), HeldNotifier(S.REVOKED), AfterRevoke()
    engine = engine_with(store, config, notifier=notifier, clock=clock, hook_modules={"db": hooks})
    granted = await engine.approve((await submitted(engine)).id, "U_BOB")
    assert await engine.settle(5) == 0
    assert granted.expires_at is not None
    clock.set(granted.expires_at)
    assert (await engine.revoke(granted.id)).status is S.REVOKED
    await asyncio.wait_for(hooks.seen.wait(), 5)  # the hook ran while the edit is still held
    assert notifier.notices[-1] == RequesterNotice.REVOKED.value
    assert S.REVOKED not in notifier.published
    notifier.release.set()
    assert await engine.settle(5) == 0
    assert notifier.published[-1] is S.REVOKED
    assert hooks.called == [granted.id]


async def test_the_granted_edit_waits_while_another_click_is_on_its_way_to_its_strategy(engine_and_notifier):
    engine, notifier = engine_and_notifier
    notifier.release.set()
    request = await submitted(engine)
    with engine.life.deciding():  # another approver's click, not yet at its strategy call
        await engine.approve(request.id, "U_BOB")
        await let_background_run()
        assert notifier.published == [S.PENDING]
        assert notifier.notices == [RequesterNotice.SUBMITTED.value]
        assert engine.life.follow_ups.pending() == 2  # the edit and the DM
    assert await engine.settle(5) == 0
    assert notifier.published == [S.PENDING, S.GRANTED]


async def test_a_steady_stream_of_clicks_delays_the_granted_edit_but_never_stops_it(engine_and_notifier):
    engine, notifier = engine_and_notifier
    notifier.release.set()
    engine.life.burst.wait = 0.01
    request = await submitted(engine)
    with engine.life.deciding():  # never ends while the edit is owed
        await engine.approve(request.id, "U_BOB")
        assert await engine.settle(5) == 0
        assert notifier.published == [S.PENDING, S.GRANTED]


async def test_an_edit_made_while_the_granted_edit_is_still_owed_lands_after_it(engine_and_notifier):
    engine, notifier = engine_and_notifier
    request = await submitted(engine)
    granted = await engine.approve(request.id, "U_BOB")
    await let_background_run()
    assert notifier.published == [S.PENDING]  # the granted edit is held by Slack
    ending = await engine.requests.update(granted.id, {"end_reason": "ended early"})
    returned = await engine.life.publish(ending)  # e.g. Revoke now's "ending…" edit
    await engine.life.tell(ending, RequesterNotice.ENDED_EARLY)
    # The edit queues behind the held one; the DMs wait for no edit, and keep their own order.
    assert returned == ending and notifier.published == [S.PENDING]
    assert notifier.notices[1:] == [RequesterNotice.GRANTED.value, RequesterNotice.ENDED_EARLY.value]
    notifier.release.set()
    assert await engine.settle(5) == 0
    assert notifier.published == [S.PENDING, S.GRANTED, S.GRANTED]


class MeetingDirectory(Directory):
    """Answers a fresh users.info only once two are in flight at the same time (or says who came alone)."""

    def __init__(self) -> None:
        self.waiting: list[str] = []
        self.both = asyncio.Event()

    async def lookup_user(self, slack_id, *, fresh=False):
        if fresh:
            self.waiting.append(slack_id)
            if len(self.waiting) == 2:
                self.both.set()
            await asyncio.wait_for(self.both.wait(), 5)  # alone for 5 s: the lookups were one after the other
        return await super().lookup_user(slack_id, fresh=fresh)


async def test_an_approval_asks_slack_about_the_clicker_and_the_requester_at_the_same_time(tmp_path, store):
    config = flows_config(tmp_path, FLOWS)
    plain = engine_with(store, config)
    request = await submitted(plain)
    directory = MeetingDirectory()
    engine = engine_with(store, config, directory=directory)
    granted = await engine.approve(request.id, "U_BOB")
    assert granted.status is S.GRANTED
    assert sorted(directory.waiting) == ["U_ALICE", "U_BOB"]


class ClickerGoneRequesterUnreachable(Directory):
    async def lookup_user(self, slack_id, *, fresh=False):
        if fresh and slack_id == "U_ALICE":
            raise ConnectionError("Slack is down")
        person = await super().lookup_user(slack_id, fresh=fresh)
        return UserInfo(person.slack_id, email=person.email, deleted=slack_id == "U_BOB")


async def test_a_refusal_of_the_clicker_is_still_the_one_given_when_the_requester_cannot_be_asked(tmp_path, store):
    config = flows_config(tmp_path, FLOWS)
    plain = engine_with(store, config)
    request = await submitted(plain)
    engine = engine_with(store, config, directory=ClickerGoneRequesterUnreachable())
    with pytest.raises(NotAllowed, match="deactivated"):
        await engine.approve(request.id, "U_BOB")
    assert (await engine.requests.get(request.id)).status is S.PENDING


class Channel:
    """A Slack channel as the notifier sees it: a request's first publish posts a message (a new ts),
    later ones edit the message whose ts they carry."""

    def __init__(self) -> None:
        self.messages: dict[str, list[str]] = {}  # ts → the statuses it showed, in order
        self.notices: list[str] = []

    async def publish(self, request):
        ts = request.message_ts or f"1.{len(self.messages) + 1:06d}"
        self.messages.setdefault(ts, []).append(request.status.value)
        return ts

    async def notify_requester(self, request, notice, detail=None):
        self.notices.append(notice.value)

    async def alert(self, alert):
        pass


class FastTrack:
    """A flow's hooks module whose on_request approves every request (an on-call rota, say)."""

    path = "fast_track.py"

    def has(self, hook: str) -> bool:
        return hook == "on_request"

    async def call(self, hook, evt, *, timeout):
        return evt.approve("on call")


async def test_a_fast_tracked_grant_revoked_before_its_first_post_leaves_one_message_that_says_revoked(tmp_path, store):
    """Alice's request is approved by the on-call hook before anything is posted, so its channel message
    is first posted by the grant's (deferred) notification. She ends it from her Home tab while that
    notification still waits behind other clicks: the channel must end up with ONE message for the
    request, saying revoked, not a stale "granted" message with live buttons and a second one."""
    config = flows_config(tmp_path, FLOWS)
    channel = Channel()
    engine = engine_with(store, config, notifier=channel, hook_modules={"db": FastTrack()})
    with engine.life.deciding():  # other approvers' clicks on their way to their strategies
        granted = await submitted(engine)
        assert granted.status is S.GRANTED and granted.message_ts is None
        await let_background_run()
        assert channel.messages == {}  # the granted post is still owed
        ended = await engine.revoke_now(granted.id, "U_ALICE")
        assert ended.status is S.REVOKED
    assert await engine.settle(5) == 0
    assert channel.messages == {"1.000001": ["granted", "revoked"]}
    assert (await engine.requests.get(granted.id)).message_ts == "1.000001"
    assert channel.notices == ["granted", "ended_early"]


# The engine tests' flow, with an end warning 10 minutes before the access ends.
WARNED_FLOWS = FLOWS.replace(
    "    approval_channel: C_APPROVALS\n", "    approval_channel: C_APPROVALS\n    warn_before: 10m\n"
)
assert "warn_before: 10m" in WARNED_FLOWS


async def test_while_slack_throttles_the_granted_edit_alices_end_warning_still_arrives_on_time(tmp_path, store):
    """Slack may refuse chat.update for longer than warn_before. The end warning is a DM, limited apart
    from edits: it goes out when due, not after the edit (nor, worse, never because the end came first)."""
    config = flows_config(tmp_path, WARNED_FLOWS)
    clock, notifier = FrozenClock(), HeldNotifier()  # the "granted" edit is held until `release`
    engine = engine_with(store, config, notifier=notifier, clock=clock)
    granted = await granted_and_warning_due(engine, clock)
    assert notifier.notices == [
        RequesterNotice.SUBMITTED.value,
        RequesterNotice.GRANTED.value,
        RequesterNotice.WARNING.value,
    ]
    assert notifier.published == [S.PENDING]  # the edit is still owed
    assert [e.action for e in await engine.audit.for_request(granted.id)].count("access.warned") == 1
    notifier.release.set()
    assert await engine.settle(5) == 0
    assert notifier.published == [S.PENDING, S.GRANTED]


async def test_a_warning_queued_behind_a_throttled_granted_dm_is_never_sent_after_the_access_ended(tmp_path, store):
    """Slack throttles Alice's "granted" DM for a long while, so it is still owed when her end warning
    falls due (queued behind it, to keep her DMs in order). Her access ends before Slack lets DMs
    through: the warning ("ends in 10 minutes, Extend?") must not be sent then, after the end; the
    revoked DM is."""
    config = flows_config(tmp_path, WARNED_FLOWS)
    clock, notifier = FrozenClock(), HeldDMNotifier()
    engine = engine_with(store, config, notifier=notifier, clock=clock)
    request = await submitted(engine)
    granted = await engine.approve(request.id, "U_BOB")
    assert granted.warn_at is not None and granted.expires_at is not None
    clock.set(granted.warn_at)
    await engine.warn(granted.id)  # due: queued behind the held "granted" DM
    clock.set(granted.expires_at)
    assert (await engine.revoke(granted.id)).status is S.REVOKED
    notifier.release.set()  # Slack lets DMs through again, after the end
    assert await engine.settle(5) == 0
    assert notifier.notices == [
        RequesterNotice.SUBMITTED.value,
        RequesterNotice.GRANTED.value,
        RequesterNotice.REVOKED.value,
    ]
    # The audit trail says what happened: no warning was sent.
    assert "access.warned" not in [e.action for e in await engine.audit.for_request(granted.id)]


async def test_a_warning_queued_behind_the_granted_dm_is_sent_after_it_while_the_access_is_live(tmp_path, store):
    config = flows_config(tmp_path, WARNED_FLOWS)
    clock, notifier = FrozenClock(), HeldDMNotifier()
    engine = engine_with(store, config, notifier=notifier, clock=clock)
    request = await submitted(engine)
    granted = await engine.approve(request.id, "U_BOB")
    assert granted.warn_at is not None
    clock.set(granted.warn_at)
    await engine.warn(granted.id)
    await let_background_run()
    # The "granted" DM is held; the warning waits behind it.
    assert notifier.notices == [RequesterNotice.SUBMITTED.value]
    assert notifier.published == [S.PENDING, S.GRANTED]  # the edit did not wait for the DM
    notifier.release.set()
    assert await engine.settle(5) == 0
    assert notifier.notices[1:] == [RequesterNotice.GRANTED.value, RequesterNotice.WARNING.value]
    assert (await engine.requests.get(granted.id)).warn_at is None  # sent once
    assert [e.action for e in await engine.audit.for_request(granted.id)].count("access.warned") == 1


async def test_a_fast_tracked_grant_whose_first_post_was_lost_at_a_stop_is_posted_by_a_later_sweep(tmp_path, store):
    """Alice's request is approved by the on-call hook, so its channel message is first posted by the
    grant's notification. The bot stops before that notification has run (other clicks were still being
    decided). After the restart nobody would ever see the live grant in the channel: the sweep posts it,
    once it is older than any first post could still be retrying, and only once."""
    config = flows_config(tmp_path, FLOWS)
    channel = Channel()
    clock = FrozenClock()
    stopped = engine_with(store, config, notifier=channel, clock=clock, hook_modules={"db": FastTrack()})
    with stopped.life.deciding():
        granted = await submitted(stopped)
        assert granted.status is S.GRANTED and granted.message_ts is None
        await let_background_run()
        assert await stopped.cancel_follow_ups() == 2  # the stop: the owed post (and DM) are dropped
    assert channel.messages == {}

    restarted = engine_with(store, config, notifier=channel, clock=clock, hook_modules={"db": FastTrack()})
    clock.advance(timedelta(minutes=10))  # another replica's first post could still be retrying
    assert (await restarted.sweep())["live_posted"] == 0
    assert channel.messages == {}
    clock.advance(timedelta(minutes=25))
    assert (await restarted.sweep())["live_posted"] == 1
    assert list(channel.messages.values()) == [["granted"]]
    assert (await restarted.requests.get(granted.id)).message_ts == "1.000001"
    assert (await restarted.sweep())["live_posted"] == 0
    assert list(channel.messages.values()) == [["granted"]]
