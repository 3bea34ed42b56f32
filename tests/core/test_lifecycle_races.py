"""Red-team cases where the after-approval features (Revoke now, Extend, requesters, reminders) meet.

The engine runs on real storage with the FakeStrategy and recording stand-ins for Slack; each race is
forced deterministically by holding one step open (an asyncio.Event) while the other click arrives.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

from core.errors import NotAllowed, StrategyUnavailable
from core.models import MessageRef
from core.models import RequestStatus as S
from core.ports import UserInfo
from storage.db import Store
from tests.fakes.clock import FrozenClock
from tests.fakes.engine import build_engine, flows_config
from tests.fakes.strategy import FakeStrategy

FLOWS = """\
slack: {alerts_channel: C_ALERTS}
flows:
  - name: db
    label: DB
    approval_channel: C_APPROVALS
    approvers: {users: [U_BOB, U_CAROL]}
    requesters: {usergroups: [S_ENGINEERS]}
    reminders: {every: 10m}
    strategy:
      type: fake
      targets:
        - {name: prod, label: Prod}
    fields:
      - {name: duration, label: Duration, type: duration, allowed_values: [1h, 2h], required: true}
  - name: pair
    label: Two-person rule
    approval_channel: C_APPROVALS
    approvers: {users: [U_BOB, U_CAROL, U_ERIN]}
    approvals_required: 2
    warn_before: 10m
    strategy:
      type: fake
      targets:
        - {name: prod, label: Prod}
    fields:
      - {name: duration, label: Duration, type: duration, allowed_values: [1h, 2h], required: true}
"""

ALICE_DM = MessageRef(channel="D_ALICE", ts="9.000001", direct=True)


class Notifier:
    """Records what the bot would have said, in order, as (kind, request id, what)."""

    def __init__(self) -> None:
        self.said: list[tuple[str, str, str]] = []
        self.on_the_way: list[asyncio.Task] = []  # what a DM's round trip to Slack gives time to finish

    async def publish(self, request):
        self.said.append(("publish", request.id, request.status.value))
        return request.message_ts or f"1.{request.id}"

    async def notify_requester(self, request, notice, detail=None):
        if self.on_the_way:
            await asyncio.wait(self.on_the_way, timeout=0.5)
            if notice.value == "warning" and all(task.done() for task in self.on_the_way):
                self.said.append(("dm", request.id, "warning after the access ended"))
                return
        self.said.append(("dm", request.id, notice.value))

    async def alert(self, alert):
        self.said.append(("alert", "", str(alert)))

    async def remind(self, request, reminder):
        self.said.append(("remind", request.id, str(reminder.number)))


class Directory:
    """Everyone is an active member; S_ENGINEERS can be edited by a test."""

    def __init__(self) -> None:
        self.engineers = {"U_ALICE", "U_DAVE"}
        self.deactivated: set[str] = set()

    async def lookup_user(self, slack_id, *, fresh=False):
        return UserInfo(
            slack_id,
            email=f"{slack_id.lower()}@example.com",
            name=slack_id.lower(),
            deleted=slack_id in self.deactivated,
        )

    async def usergroup_members(self, group, *, fresh=False):
        return frozenset(self.engineers) if group == "S_ENGINEERS" else frozenset()


@pytest.fixture
async def world(tmp_path, databases):
    config = flows_config(tmp_path, FLOWS)
    store = await Store.open(databases.where())
    clock, notifier, strategy, directory = FrozenClock(), Notifier(), FakeStrategy(), Directory()
    engine = build_engine(
        store,
        config,
        strategies={"db": strategy, "pair": strategy},
        notifier=notifier,
        directory=directory,
        clock=clock,
    )
    yield engine, clock, notifier, strategy, directory
    await engine.settle(5)
    await store.close()


async def ask(engine, user="U_ALICE", duration="1h", flow="db"):
    hours = int(duration[:-1])
    draft = await engine.prepare(flow, user, "prod", {"duration": duration}, timedelta(hours=hours))
    return await engine.submit(draft)


def channel_message(request) -> MessageRef:
    return MessageRef(channel=request.approval_channel, ts=request.message_ts)


async def granted(engine, user="U_ALICE"):
    request = await ask(engine, user)
    request = await engine.approve(request.id, "U_BOB", source=channel_message(request))
    assert request.status is S.GRANTED
    return request


async def actions(engine, request_id):
    return [e.action for e in await engine.audit.for_request(request_id)]


async def test_revoke_now_arriving_while_an_extension_takes_the_access_over_ends_the_access(world):
    """Alice presses Revoke now on her DM at the moment Bob approves her extension: the access must end,
    not stay on under the extension while she is told it "has already ended"."""
    engine, clock, notifier, strategy, _ = world
    first = await granted(engine)
    clock.advance(timedelta(minutes=10))
    extension = await engine.extend(first.id, "U_ALICE", 3600)
    assert extension.extends == first.id and extension.status is S.PENDING

    repo = engine.requests
    entered, release = asyncio.Event(), asyncio.Event()
    real = repo.transition_all

    async def held_open(steps):
        entered.set()
        await release.wait()
        return await real(steps)

    repo.transition_all = held_open  # the take-over is mid-way (under the first grant's lock)
    approving = asyncio.create_task(engine.approve(extension.id, "U_BOB", source=channel_message(extension)))
    await entered.wait()
    revoking = asyncio.create_task(engine.revoke_now(first.id, "U_ALICE", source=ALICE_DM))
    for _ in range(20):
        await asyncio.sleep(0)  # the click has read the first grant as live and waits for its lock
    release.set()
    extended = await approving
    assert extended.status is S.GRANTED

    ended = await revoking  # before the fix: AlreadyEnded("This access has already ended.")
    assert ended.id == extension.id and ended.status is S.REVOKED and ended.revoked_by == "U_ALICE"
    assert not strategy.holds("u_alice@example.com", "prod")


async def test_an_extension_asked_before_a_revoke_now_is_not_approved_after_it(world):
    """Bob ends Alice's access early (an incident); her extension, asked before, must not reopen it."""
    engine, clock, notifier, strategy, _ = world
    first = await granted(engine)
    extension = await engine.extend(first.id, "U_ALICE", 3600)
    await engine.revoke_now(first.id, "U_BOB", source=channel_message(first))
    assert not strategy.holds("u_alice@example.com", "prod")

    extension = await engine.requests.get(extension.id)
    with pytest.raises(NotAllowed):
        await engine.approve(extension.id, "U_CAROL", source=channel_message(extension))
    extension = await engine.requests.get(extension.id)
    assert extension.status is not S.GRANTED
    assert not strategy.holds("u_alice@example.com", "prod")
    assert len(strategy.calls_of("grant")) == 1


async def test_revoke_now_closes_the_pending_extensions_of_the_access_it_ends(world):
    """After Revoke now, an extension asked before it leaves the approvers' channel: no buttons that only refuse."""
    engine, clock, notifier, strategy, _ = world
    first = await granted(engine)
    extension = await engine.extend(first.id, "U_ALICE", 3600)
    await engine.revoke_now(first.id, "U_BOB", source=channel_message(first))
    extension = await engine.requests.get(extension.id)
    assert extension.status is S.EXPIRED
    assert "ended early" in (extension.decision_reason or "")
    assert "request.expired" in await actions(engine, extension.id)
    assert ("dm", extension.id, "expired") in notifier.said


async def test_a_requester_removed_from_the_flows_requesters_is_not_granted_by_a_later_approval(world):
    """Dave asked while in the engineers group, then left it: Bob's Approve must be refused, as the form would."""
    engine, clock, notifier, strategy, directory = world
    request = await ask(engine, "U_DAVE")
    directory.engineers.discard("U_DAVE")
    with pytest.raises(NotAllowed):
        await engine.approve(request.id, "U_BOB", source=channel_message(request))
    assert (await engine.requests.get(request.id)).status is S.PENDING
    assert not strategy.calls_of("grant")
    assert "click.refused" in await actions(engine, request.id)


async def test_no_reminder_is_posted_after_the_request_was_cancelled(world):
    """A reminder claimed just before the requester cancels must not be posted after the cancellation."""
    engine, clock, notifier, strategy, _ = world
    request = await ask(engine)
    clock.advance(timedelta(minutes=10))

    store = engine.reminders.store
    real = store.claim

    cancelling: list[asyncio.Task] = []

    async def claim_then_cancel(*args, **kwargs):
        claimed = await real(*args, **kwargs)
        cancelling.append(asyncio.create_task(engine.cancel(request.id, "U_ALICE")))
        # The cancel gets every chance to finish now (it cannot, once the reminder holds the request's lock).
        await asyncio.wait(cancelling, timeout=0.5)
        return claimed

    store.claim = claim_then_cancel
    await engine.reminders.remind(request.id)
    assert (await asyncio.gather(*cancelling))[0].status is S.CANCELLED
    said = [(kind, what) for kind, rid, what in notifier.said if rid == request.id]
    assert ("publish", "cancelled") in said
    reminded = [i for i, (kind, _) in enumerate(said) if kind == "remind"]
    assert all(i < said.index(("publish", "cancelled")) for i in reminded)


async def test_an_approval_from_someone_deactivated_since_does_not_count_towards_two(world):
    """Bob approves, then his account is deactivated (he left): Carol's approval alone must not grant."""
    engine, clock, notifier, strategy, directory = world
    request = await ask(engine, flow="pair")
    request = await engine.approve(request.id, "U_BOB", source=channel_message(request))
    assert request.status is S.PENDING and request.approvals == ("U_BOB",)
    directory.deactivated.add("U_BOB")
    request = await engine.approve(request.id, "U_CAROL", source=channel_message(request))
    assert request.status is S.PENDING and request.approvals == ("U_CAROL",)
    assert not strategy.calls_of("grant")
    assert "request.approvals_withdrawn" in await actions(engine, request.id)


async def test_a_deactivated_approver_cannot_decide(world):
    """A click (or an API call) by a deactivated account decides nothing."""
    engine, clock, notifier, strategy, directory = world
    request = await ask(engine)
    directory.deactivated.add("U_BOB")
    with pytest.raises(NotAllowed):
        await engine.approve(request.id, "U_BOB", source=channel_message(request))
    assert (await engine.requests.get(request.id)).status is S.PENDING and not strategy.calls_of("grant")


async def test_no_end_warning_is_sent_after_a_revoke_now(world):
    """The warning falls due as an approver presses Revoke now: Alice is never told, after her access
    ended, that it ends soon with an Extend button."""
    engine, clock, notifier, strategy, _ = world
    request = await ask(engine, flow="pair")
    request = await engine.approve(request.id, "U_BOB", source=channel_message(request))
    request = await engine.approve(request.id, "U_CAROL", source=channel_message(request))
    assert request.status is S.GRANTED and request.warn_at is not None
    clock.set(request.warn_at)

    repo = engine.requests
    real = repo.update
    revoking: list[asyncio.Task] = []

    async def cleared_then_revoked(request_id, changes, **kwargs):
        updated = await real(request_id, changes, **kwargs)
        if dict(changes) == {"warn_at": None}:
            revoking.append(asyncio.create_task(engine.revoke_now(request_id, "U_ERIN")))
            notifier.on_the_way.extend(revoking)  # the warning DM takes a while to reach Slack
        return updated

    repo.update = cleared_then_revoked
    await engine.warn(request.id)
    ended = (await asyncio.gather(*revoking))[0]
    notifier.on_the_way.clear()
    assert ended.status is S.REVOKED
    await engine.settle(5)
    said = [(kind, what) for kind, rid, what in notifier.said if rid == request.id]
    assert ("dm", "ended_early") in said
    assert ("dm", "warning after the access ended") not in said


async def test_revoke_now_ends_the_access_even_when_a_second_grant_of_it_is_live(world):
    """Alice asked twice before either was approved, and both were granted (one membership in the
    target). Bob's Revoke now on one must end her access, not leave it on under the other while the
    message says "ended early"."""
    engine, clock, notifier, strategy, _ = world
    one, two = await ask(engine), await ask(engine, duration="2h")
    assert one.extends is None and two.extends is None  # independent: neither was held when asked
    one = await engine.approve(one.id, "U_BOB", source=channel_message(one))
    two = await engine.approve(two.id, "U_CAROL", source=channel_message(two))
    assert one.status is S.GRANTED and two.status is S.GRANTED

    ended = await engine.revoke_now(one.id, "U_BOB", source=channel_message(one))
    assert ended.status is S.REVOKED
    assert not strategy.holds("u_alice@example.com", "prod")
    two = await engine.requests.get(two.id)
    assert two.status is S.REVOKED and two.revoked_by == "U_BOB"
    assert "access.revoke_requested" in await actions(engine, two.id)


async def test_an_extension_approved_by_two_people_through_the_api_is_audited_like_any_approval(world):
    """The audit row of an extension's approval says who counted and how it came (via, token), as an
    ordinary approval's does: the evidence does not depend on whether the end moved."""
    engine, clock, notifier, strategy, _ = world
    first = await ask(engine, flow="pair")
    first = await engine.approve(first.id, "U_BOB", source=channel_message(first))
    first = await engine.approve(first.id, "U_CAROL", source=channel_message(first))
    assert first.status is S.GRANTED
    extension = await engine.extend(first.id, "U_ALICE", 3600)
    extension = await engine.approve(extension.id, "U_BOB", via="api", token="ops-bot")
    extension = await engine.approve(extension.id, "U_ERIN", via="api", token="ops-bot")
    assert extension.status is S.GRANTED and extension.extends == first.id
    approved = [e for e in await engine.audit.for_request(extension.id) if e.action == "request.approved"]
    assert len(approved) == 1
    assert approved[0].detail.get("approvals") == ["U_BOB", "U_ERIN"]
    assert approved[0].detail.get("via") == "api"


async def test_an_extension_approved_at_the_very_instant_the_access_ends_is_an_ordinary_grant_kept_to_its_end(world):
    """Bob approves at the second the first grant ends, before its revocation ran: the extension is
    granted as an ordinary grant, the first's revocation then finds it covering the same membership and
    takes nothing away, and the access ends at the extension's own end."""
    engine, clock, notifier, strategy, _ = world
    first = await granted(engine)
    extension = await engine.extend(first.id, "U_ALICE", 3600)
    assert first.expires_at is not None
    clock.set(first.expires_at)
    extension = await engine.approve(extension.id, "U_BOB", source=channel_message(extension))
    assert extension.status is S.GRANTED and extension.expires_at == first.expires_at + timedelta(hours=1)
    first = await engine.revoke(first.id)
    assert first is not None and first.status is S.REVOKED
    assert strategy.holds("u_alice@example.com", "prod") and not strategy.calls_of("revoke")
    clock.set(extension.expires_at)
    await engine.revoke(extension.id)
    assert not strategy.holds("u_alice@example.com", "prod")


async def test_an_approve_clicked_the_moment_the_request_is_posted_waits_for_it_to_be_recorded(world):
    """Bob clicks Approve as soon as the message appears, before jitbot has stored which message it is
    (a fast approver, or a second replica): the click must wait for the post, not be refused as coming
    from a foreign message."""
    engine, _, _, strategy, _ = world
    repo = engine.requests
    posted, release = asyncio.Event(), asyncio.Event()
    real = repo.update

    async def held_open(request_id, changes, **kwargs):
        if "message_ts" in changes:
            posted.set()
            await release.wait()
        return await real(request_id, changes, **kwargs)

    repo.update = held_open  # the message is in the channel; its ts is not stored yet
    submitting = asyncio.create_task(ask(engine))
    await posted.wait()
    (pending,) = await repo.list_by_status(S.PENDING)
    message = MessageRef(channel=pending.approval_channel, ts=f"1.{pending.id}")
    approving = asyncio.create_task(engine.approve(pending.id, "U_BOB", source=message))
    for _ in range(20):
        await asyncio.sleep(0)
    release.set()
    await submitting
    approved = await approving  # before the fix: NotAllowed("This button does not belong to ...")
    assert approved.status is S.GRANTED
    assert strategy.holds("u_alice@example.com", "prod")


class HeldHooks:
    """A hooks module (the HookRunner's double) whose on_request waits until the test lets it answer."""

    path = "held_hooks.py"

    def __init__(self) -> None:
        self.running = asyncio.Event()
        self.answer = asyncio.Event()

    def has(self, hook: str) -> bool:
        return hook == "on_request"

    async def call(self, hook, evt, *, timeout):
        self.running.set()
        await self.answer.wait()
        return None  # humans decide


async def test_a_request_cancelled_while_its_hooks_run_is_not_then_posted_as_submitted(tmp_path):
    """Alice cancels her request from her Home tab while the flow's on_request hook is still running
    (it may take seconds): when the hook answers, the request stays cancelled, nothing tells her it
    was submitted, and no reminder or timeout is armed for it."""
    config = flows_config(tmp_path, FLOWS)
    store = await Store.open(tmp_path / "db.sqlite")
    hooks, notifier, timers = HeldHooks(), Notifier(), []

    class Timers:
        def arm_expire(self, request_id, at):
            timers.append(("expire", request_id))

        def __getattr__(self, name):
            return lambda *args, **kwargs: None

    engine = build_engine(
        store,
        config,
        strategies={"db": FakeStrategy(), "pair": FakeStrategy()},
        notifier=notifier,
        directory=Directory(),
        clock=FrozenClock(),
        hook_modules={"db": hooks},
        timers=Timers(),
    )
    try:
        draft = await engine.prepare("db", "U_ALICE", "prod", {"duration": "1h"}, timedelta(hours=1))
        submitting = asyncio.create_task(engine.submit(draft))
        await hooks.running.wait()
        (pending,), _ = await engine.requests.page_for_requester("U_ALICE", [S.PENDING], 10)
        await engine.cancel(pending.id, "U_ALICE")
        hooks.answer.set()
        request = await submitting

        assert request.status is S.CANCELLED
        assert (await engine.requests.get(pending.id)).status is S.CANCELLED
        told = [what for kind, rid, what in notifier.said if kind == "dm" and rid == pending.id]
        assert told == ["cancelled"]
        assert [what for kind, rid, what in notifier.said if kind == "publish" and rid == pending.id] == ["cancelled"]
        assert timers == []
    finally:
        await engine.settle(5)
        await store.close()


async def test_a_failed_revocation_waits_out_its_back_off_though_a_sweep_listed_it_before_the_failure(world):
    """A replica's poll lists Alice's ended grant as due at the moment its timer runs the revocation,
    which fails: the poll's turn comes right after and must leave the retry to its back-off, not call
    the target system again at once (seen on PostgreSQL as a second attempt 0.09 s after the first)."""
    engine, clock, _, strategy, _ = world
    request = await granted(engine)
    clock.advance(timedelta(hours=1, seconds=1))
    strategy.fail_next("revoke", StrategyUnavailable("target down", retryable=True))
    failed = await engine.revoke(request.id)  # the timer's turn: attempt 1 fails, retry armed
    assert failed is not None and failed.status is S.GRANTED and failed.revoke_attempts == 1
    assert failed.next_attempt_at is not None and failed.next_attempt_at > clock.now()
    calls = len(strategy.calls_of("revoke"))

    assert await engine.revoke(request.id) is None  # the sweep's turn, listed before the failure
    assert len(strategy.calls_of("revoke")) == calls  # before the fix: a second attempt at once

    clock.advance(failed.next_attempt_at - clock.now())
    revoked = await engine.revoke(request.id)  # the back-off is over: the retry runs
    assert revoked is not None and revoked.status is S.REVOKED
    assert not strategy.holds("u_alice@example.com", "prod")
