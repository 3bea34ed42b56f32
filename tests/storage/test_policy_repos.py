"""ApprovalRepo and ReminderRepo: each write a compare-and-set with its audit row, on a real SQLite store."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import timedelta

import pytest

from core.errors import InvalidTransition
from core.models import RequestStatus as S
from storage import AuditLog
from storage.approvals import ApprovalRepo
from storage.reminders import ReminderRepo

from .conftest import T0, event, make_request


async def test_an_approval_is_appended_once_with_its_audit_row(store, repo):
    approvals, audit = ApprovalRepo(store), AuditLog(store)
    await repo.create(make_request("r1"), event())
    request, added = await approvals.add("r1", "U0BOB", event("request.approval_counted", "U0BOB"))
    assert added and request.approvals == ("U0BOB",)
    again, added = await approvals.add("r1", "U0BOB", event("request.approval_counted", "U0BOB"))
    assert not added and again.approvals == ("U0BOB",)
    _, added = await approvals.add("r1", "U0CAROL", event("request.approval_counted", "U0CAROL"))
    assert added and (await repo.get("r1")).approvals == ("U0BOB", "U0CAROL")
    counted = [e.actor for e in await audit.for_request("r1") if e.action == "request.approval_counted"]
    assert counted == ["U0BOB", "U0CAROL"]  # the repeat wrote nothing


async def test_an_approval_of_a_request_no_longer_pending_is_refused_and_writes_nothing(store, repo):
    approvals, audit = ApprovalRepo(store), AuditLog(store)
    await repo.create(make_request("r1", status=S.DENIED), event())
    with pytest.raises(InvalidTransition) as lost:
        await approvals.add("r1", "U0BOB", event("request.approval_counted", "U0BOB"))
    assert lost.value.current == "denied"
    assert [e.action for e in await audit.for_request("r1")] == ["request.created"]


async def test_approvals_at_once_are_each_counted_once(store, repo):
    approvals = ApprovalRepo(store)
    await repo.create(make_request("r1"), event())
    people = ["U0A", "U0B", "U0A", "U0C", "U0B"]
    results = await asyncio.gather(*(approvals.add("r1", p, event("request.approval_counted", p)) for p in people))
    assert sum(added for _, added in results) == 3
    assert sorted((await repo.get("r1")).approvals) == ["U0A", "U0B", "U0C"]


async def test_a_reminder_is_claimed_once_only_while_pending_and_escalation_once(store, repo):
    reminders, audit = ReminderRepo(store), AuditLog(store)
    await repo.create(make_request("r1", message_ts="1.1"), event())
    assert (await reminders.get("r1")).sent == 0
    assert await reminders.claim("r1", 1, False, event("request.reminded", "system"))
    assert not await reminders.claim("r1", 1, False, event("request.reminded", "system"))  # a repeat
    assert await reminders.claim("r1", 3, True, event("request.escalated", "system"))
    assert not await reminders.claim("r1", 3, True, event("request.escalated", "system"))
    state = await reminders.get("r1")
    assert state.sent == 3 and state.escalated_at == T0
    assert [e.action for e in await audit.for_request("r1")][1:] == ["request.reminded", "request.escalated"]

    await repo.transition("r1", S.PENDING, S.DENIED, audit=event("request.denied", "U0BOB"))
    assert not await reminders.claim("r1", 4, False, event("request.reminded", "system"))
    assert await reminders.get("r1") is None  # a decided request has no reminders left


async def test_pending_lists_only_pending_requests_of_the_named_flows(store, repo):
    reminders = ReminderRepo(store)
    await repo.create(make_request("a", created_at=T0 + timedelta(minutes=1)), event())
    await repo.create(make_request("b"), event())
    await repo.create(replace(make_request("c"), flow="other"), event())
    await repo.create(make_request("d", status=S.DENIED), event())
    assert [s.request_id for s in await reminders.pending(["db_access"])] == ["b", "a"]
    assert await reminders.pending([]) == []
