"""Reminders and escalation of pending requests (a flow's `reminders:`), on the durable timers.

While a request is pending, reminder k is due `k × every` after it was made: a reply in the thread of
its channel message mentions the approvers who have not approved yet. `escalate_after` after it was
made, the reply also mentions `escalate_to`, who may decide from then on (checked at the click, against
now, by core.decisions). Nothing about the schedule is stored but what was already posted
(`ReminderStore`, claimed before each post with its audit row, only while the request is pending):

- a restart re-arms every pending request's next reminder from the stored rows (`schedule`), like
  revocations; reminders missed while the bot was down become ONE reminder, not a burst;
- a decided, expired or withdrawn request is never reminded (the claim checks it is pending);
- the sweep posts whatever is overdue, so a lost timer costs at most a sweep interval.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

import structlog

from core.config_models import Flow
from core.lifecycle import SYSTEM, Lifecycle
from core.models import AccessRequest
from core.policy_ports import Reminder, ReminderNotifier, ReminderState, ReminderStore, ReminderTimers
from core.ports import Directory

log = structlog.get_logger("jitbot.reminders")


def reminders_due(flow: Flow, state: ReminderState, now: datetime) -> tuple[int, bool]:
    """(how many reminders are due by `now`, whether the escalation is due and not yet posted)."""
    policy = flow.reminders
    if policy is None or now < state.created_at:
        return 0, False
    count = int((now - state.created_at) / policy.every)
    escalate = (
        policy.escalate_after is not None
        and state.escalated_at is None
        and now >= state.created_at + policy.escalate_after
    )
    return count, escalate


def next_reminder_at(flow: Flow, state: ReminderState) -> datetime | None:
    """When the next reminder (or the escalation) of a pending request is due; None without reminders."""
    policy = flow.reminders
    if policy is None:
        return None
    when = state.created_at + (state.sent + 1) * policy.every
    if policy.escalate_after is not None and state.escalated_at is None:
        when = min(when, state.created_at + policy.escalate_after)
    return when


def escalated(flow: Flow, request: AccessRequest, now: datetime) -> bool:
    """Whether a pending request is past its flow's escalate_after (escalate_to may decide it)."""
    policy = flow.reminders
    return bool(
        policy is not None
        and policy.escalate_after is not None
        and policy.escalate_to is not None
        and now >= request.created_at + policy.escalate_after
    )


class Reminders:
    """Posts due reminders and arms the next one; see the module docstring."""

    def __init__(self, life: Lifecycle, directory: Directory, store: ReminderStore | None) -> None:
        self.life = life
        self.directory = directory
        self.store = store

    def _flows(self) -> list[Flow]:
        return [flow for flow in self.life.config.flows if flow.reminders is not None]

    async def schedule(self, until: datetime | None = None) -> list[tuple[str, datetime]]:
        """(request id, next reminder time) of every pending request with reminders (due by `until`)."""
        if self.store is None:
            return []
        flows = {flow.name: flow for flow in self._flows()}
        found = []
        for state in await self.store.pending(list(flows)):
            when = next_reminder_at(flows[state.flow], state)
            if when is not None and (until is None or when <= until):
                found.append((state.request_id, when))
        return found

    async def sweep(self) -> int:
        """Post every overdue reminder (after a restart, a lost timer); return how many were posted."""
        if self.store is None:
            return 0
        now = self.life.clock.now()
        posted = 0
        for request_id, when in await self.schedule(now):
            if when <= now and await self.remind(request_id):
                posted += 1
        return posted

    async def remind(self, request_id: str) -> bool:
        """Post a pending request's due reminder (or escalation) and arm the next; False when none was due."""
        if self.store is None:
            return False
        state = await self.store.get(request_id)
        flow = self.life.flow(state.flow) if state is not None else None
        if state is None or flow is None or flow.reminders is None:
            return False  # decided, or no longer configured: nothing to say
        now = self.life.clock.now()
        count, escalate = reminders_due(flow, state, now)
        if state.message_ts is None:
            return False  # not posted yet: nothing to reply under; the first post arms its reminders
        if count <= state.sent and not escalate:
            self._arm_next(flow, state)
            return False
        # Under the request's lock, from the claim to the post: a decision or a cancel waits for it,
        # so no reminder is ever posted after the request was decided or withdrawn.
        async with self.life.lock(request_id):
            request = await self.life.requests.get(request_id)
            if self.life.timed_out(request):
                return False  # its expiry, not a reminder, is what is due
            if request.approvers == ():
                return False  # nobody may decide it (its rule failed): there is no one to remind
            reminder = self._reminder(flow, request, count, escalate, now)
            action = "request.escalated" if escalate else "request.reminded"
            detail = {
                "reminder": count,
                "mentioned": [
                    *reminder.users,
                    *reminder.usergroups,
                    *reminder.escalate_users,
                    *reminder.escalate_groups,
                ],
            }
            claimed = await self.store.claim(
                request_id, count, escalate, self.life.event(request, SYSTEM, action, detail=detail)
            )
            if not claimed:
                return False
            log.info(action, request_id=request_id, reminder=count)
            notifier = self.life.notifier
            try:
                if isinstance(notifier, ReminderNotifier):
                    await notifier.remind(request, reminder)
            except Exception:  # best effort, like every notification: the next one is still armed
                log.exception("remind.failed", request_id=request_id)
        updated = await self.store.get(request_id)
        if updated is not None:
            self._arm_next(flow, updated)
        return True

    def _arm_next(self, flow: Flow, state: ReminderState) -> None:
        when = next_reminder_at(flow, state)
        # Only a time still ahead: a due one is the sweep's, never a timer that fires at once, again.
        if when is not None and when > self.life.clock.now() and isinstance(self.life.timers, ReminderTimers):
            self.life.timers.arm_remind(state.request_id, when)

    def arm_first(self, request: AccessRequest) -> None:
        """Arm a newly posted request's first reminder."""
        flow = self.life.flow(request.flow)
        if flow is None or flow.reminders is None:
            return
        self._arm_next(flow, ReminderState(request.id, request.flow, request.created_at, request.message_ts))

    def _reminder(self, flow: Flow, request: AccessRequest, count: int, escalate: bool, now: datetime) -> Reminder:
        users, groups = deciders(flow, request)
        policy = flow.reminders
        is_escalated = escalated(flow, request, now)
        to = policy.escalate_to if policy is not None and is_escalated else None
        return Reminder(
            number=count,
            waiting=now - request.created_at,
            users=tuple(u for u in users if u not in request.approvals),
            usergroups=tuple(groups),
            escalated=is_escalated,
            escalating_now=escalate,
            escalate_users=tuple(to.users) if to is not None else (),
            escalate_groups=tuple(to.usergroups) if to is not None else (),
        )


def deciders(flow: Flow | None, request: AccessRequest) -> tuple[list[str], list[str]]:
    """(users, user groups) who may decide a request as configured: get_approvers' answer when it gave
    one, else the flow's approvers; both empty when anyone but the requester may decide (or nobody)."""
    if request.approvers is not None:
        return _unique(request.approvers), []
    if flow is None or flow.approvers is None:
        return [], []
    return _unique(flow.approvers.users), _unique(flow.approvers.usergroups)


def _unique(items: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(items))
