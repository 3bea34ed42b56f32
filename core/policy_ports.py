"""What the approval policy (core.approvals, core.reminders) needs from storage, as protocols.

storage/approvals.py and storage/reminders.py implement them. Kept apart from core.ports so the
policy's stores read as one piece; the same rule holds: core owns the protocol, storage the SQL.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol, runtime_checkable

from core.models import AccessRequest, AuditEvent


class ApprovalStore(Protocol):
    """One approval of a request that needs several, recorded as a compare-and-set with its audit row."""

    async def add(self, request_id: str, approver: str, audit: AuditEvent) -> tuple[AccessRequest, bool]:
        """Append `approver` to a PENDING request's approvals with its audit row, in one transaction.

        Returns the request as stored and whether the approval was new; a repeat by the same person
        writes nothing and returns False. InvalidTransition when the request is no longer pending.
        """
        ...

    async def withdraw(self, request_id: str, approvers: Sequence[str], audit: AuditEvent) -> AccessRequest:
        """Remove `approvers` from a PENDING request's approvals with its audit row, in one transaction.
        InvalidTransition when the request is no longer pending."""
        ...


@dataclass(frozen=True)
class ReminderState:
    """Where one pending request's reminders stand: what was posted already."""

    request_id: str
    flow: str
    created_at: datetime
    message_ts: str | None
    sent: int = 0
    escalated_at: datetime | None = None


class ReminderStore(Protocol):
    """What was reminded, claimed before posting so that a restart never repeats a reminder."""

    async def pending(self, flows: Sequence[str]) -> list[ReminderState]:
        """The reminder state of every pending request of these flows."""
        ...

    async def get(self, request_id: str) -> ReminderState | None:
        """The reminder state of one request, None when it is not pending."""
        ...

    async def claim(self, request_id: str, sent: int, escalate: bool, audit: AuditEvent) -> bool:
        """Record that reminder number `sent` (and the escalation, if `escalate`) is being posted, with its
        audit row, only while the request is pending and fewer were sent; False when someone was first."""
        ...


@dataclass(frozen=True)
class Reminder:
    """A reminder to post under a pending request's message: who to mention and why, as data.

    `users` / `usergroups` are the approvers still to decide; `escalate_users` / `escalate_groups`
    the escalation's people, once `escalated` (they may decide from then on)."""

    number: int
    waiting: timedelta
    users: tuple[str, ...] = ()
    usergroups: tuple[str, ...] = ()
    escalated: bool = False
    escalating_now: bool = False
    escalate_users: tuple[str, ...] = ()
    escalate_groups: tuple[str, ...] = ()


@runtime_checkable
class ReminderNotifier(Protocol):
    """A notifier that can post reminders in a request's thread (handlers.notifier.SlackNotifier)."""

    async def remind(self, request: AccessRequest, reminder: Reminder) -> None: ...


@runtime_checkable
class ReminderTimers(Protocol):
    """Timers that can arm a request's next reminder (core.scheduler.Scheduler)."""

    def arm_remind(self, request_id: str, when: datetime) -> None: ...
