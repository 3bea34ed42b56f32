"""Reminders and escalation through the Slack emulator, across a restart (docs/slack-behaviour.md).

Time is a FrozenClock; the sweep stands in for the timers (the restarted bot's scheduler is checked
to re-arm the next reminder from the database, as it re-arms revocations).
"""

from __future__ import annotations

from datetime import timedelta

from core.models import RequestStatus
from tests.e2e.conftest import SECRET_ENV, WEBHOOK_SECRET, standard_flow
from tests.e2e.flows import APPROVAL_CHANNEL, flows_file
from tests.fakes.clock import FrozenClock

REMINDERS = {"every": "30m", "escalate_after": "2h", "escalate_to": {"users": ["U_DAVE"]}}


def reminder_flows(receiver_url: str) -> str:
    return flows_file(standard_flow(receiver_url, request_timeout="8h", reminders=REMINDERS))


def replies(bot, message) -> list:
    return [m for m in bot.slack.messages_in(APPROVAL_CHANNEL) if m.thread_ts == message.ts and m.ts != message.ts]


async def start(launch, receiver, monkeypatch, clock: FrozenClock | None = None):
    monkeypatch.setenv(SECRET_ENV, WEBHOOK_SECRET)
    launch.slack.add_user("U_DAVE", email="dave@example.com", name="dave")
    return await launch.start(reminder_flows(receiver.url), clock=clock)


async def test_reminders_mention_the_approvers_in_the_thread_every_interval(launch, receiver, monkeypatch):
    bot = await start(launch, receiver, monkeypatch)
    message = await bot.request("U_ALICE", "db_access", APPROVAL_CHANNEL, target="Prod Admin")
    bot.clock.advance(minutes=29)
    await bot.engine.sweep()
    assert replies(bot, message) == []

    bot.clock.advance(minutes=1)
    await bot.engine.sweep()
    await bot.engine.sweep()  # a second sweep in the same minute posts nothing more
    (first,) = replies(bot, message)
    assert "<!subteam^S_SECOPS>" in first.plain and "Reminder" in first.plain

    bot.clock.advance(minutes=30)
    await bot.engine.sweep()
    assert len(replies(bot, message)) == 2
    (request,) = await bot.all_requests()
    assert [e.action for e in await bot.audit(request.id)].count("request.reminded") == 2


async def test_reminders_survive_a_restart_without_a_burst_or_a_repeat(launch, receiver, monkeypatch):
    clock = FrozenClock()
    bot = await start(launch, receiver, monkeypatch, clock)
    message = await bot.request("U_ALICE", "db_access", APPROVAL_CHANNEL, target="Prod Admin")
    clock.advance(minutes=30)
    await bot.engine.sweep()
    assert len(replies(bot, message)) == 1
    await bot.stop()

    clock.advance(minutes=70)  # 1h40m after the request: reminders 2 and 3 fell in the outage
    again = await launch.start(reminder_flows(receiver.url), clock=clock)
    (request,) = await again.all_requests()
    # At start the scheduler re-arms the next reminder from the stored rows, like a revocation.
    await again.runtime.scheduler.arm_window()
    job = again.runtime.scheduler._scheduler.get_job(f"remind:{request.id}")
    assert job is not None
    await again.engine.sweep()
    assert len(replies(again, message)) == 2  # one catch-up reply, not one per missed interval
    await again.engine.sweep()
    assert len(replies(again, message)) == 2


async def test_escalation_lets_the_backup_approver_decide_after_escalate_after(launch, receiver, monkeypatch):
    bot = await start(launch, receiver, monkeypatch)
    message = await bot.request("U_ALICE", "db_access", APPROVAL_CHANNEL, target="Prod Admin")
    assert "Escalates to:" in message.plain and "<@U_DAVE>" in message.plain

    await bot.slack.click(message, text="Approve", user="U_DAVE")  # before escalate_after: not yet
    await bot.slack.wait_for_ephemeral("U_DAVE", contains="not an approver")

    bot.clock.advance(hours=2)
    await bot.engine.sweep()
    escalation = replies(bot, message)[-1]
    assert "escalating to <@U_DAVE>" in escalation.plain
    (request,) = await bot.all_requests()
    assert "request.escalated" in [e.action for e in await bot.audit(request.id)]

    await bot.approve(message, "U_DAVE")
    assert len(receiver.accepted("grant")) == 1


async def test_a_decided_request_is_never_reminded(launch, receiver, monkeypatch):
    bot = await start(launch, receiver, monkeypatch)
    message = await bot.request("U_ALICE", "db_access", APPROVAL_CHANNEL, target="Prod Admin")
    await bot.approve(message, "U_BOB")
    await bot.engine.sweep()
    bot.clock.advance(minutes=29)
    await bot.engine.sweep()
    (request,) = await bot.all_requests()
    assert request.status is RequestStatus.GRANTED
    # The timer armed at submit may still fire: it finds the request decided and posts nothing.
    assert await bot.engine.reminders.remind(request.id) is False
    bot.clock.advance(timedelta(hours=3))
    await bot.engine.sweep()
    assert replies(bot, message) == []
