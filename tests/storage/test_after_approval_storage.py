"""The requests table after approval: `cancelled` admitted on an old database, several CAS in one transaction."""

from __future__ import annotations

import sqlite3
from datetime import timedelta

import pytest
import sqlite_utils

from core.errors import InvalidTransition
from core.models import RequestStatus, TransitionStep
from storage import AuditLog, RequestRepo, Store
from storage.migrations import MIGRATIONS, apply_migrations

from .conftest import T0, event, granted, make_request

OLD_STATUSES = "'pending', 'approved', 'granted', 'revoked', 'denied', 'failed', 'expired'"


def _old_database(path) -> None:
    """A database as the version before `cancelled` left it: m001–m005, the old status CHECK, one row."""
    db = sqlite_utils.Database(str(path))
    MIGRATIONS.apply(db, stop_before="m006_requests_admit_cancelled")
    create = db.execute("SELECT sql FROM sqlite_master WHERE name = 'requests'").fetchone()[0]
    assert "'cancelled'" in create  # m001 writes the statuses of the running version: make it the old list
    db.execute("PRAGMA writable_schema = ON")
    old = create.replace(
        create[create.index("CHECK (status IN (") :].split(")")[0] + ")", f"CHECK (status IN ({OLD_STATUSES})"
    )
    db.execute("UPDATE sqlite_master SET sql = ? WHERE name = 'requests'", [old])
    db.execute("PRAGMA writable_schema = OFF")
    db.conn.commit()
    db.close()
    db = sqlite_utils.Database(str(path))
    db.execute(
        "INSERT INTO requests (id, flow, target, requester, status, created_at, duration_seconds) "
        "VALUES ('old1', 'db_access', 'prod_admin', 'U0REQ', 'pending', '2026-11-21T15:00:00.000000Z', 3600)"
    )
    with pytest.raises(sqlite3.IntegrityError):
        db.execute("UPDATE requests SET status = 'cancelled' WHERE id = 'old1'")
    db.conn.commit()
    db.close()


async def test_an_old_database_admits_cancelled_and_keeps_its_rows_indexes_and_audit_triggers(tmp_path):
    path = tmp_path / "old.db"
    _old_database(path)
    async with await Store.open(path) as store:
        repo = RequestRepo(store)
        row = await repo.get("old1")
        assert row.status is RequestStatus.PENDING and row.extends is None and row.warn_at is None
        cancelled = await repo.transition(
            "old1",
            RequestStatus.PENDING,
            RequestStatus.CANCELLED,
            changes={"ended_at": T0},
            audit=event("request.cancelled"),
        )
        assert cancelled.status is RequestStatus.CANCELLED
        names = await store.read(
            lambda db: {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE name NOT LIKE 'sqlite_%'")}
        )
        assert {
            "requests_status_expires",
            "requests_status_timeout",
            "requests_requester",
            "requests_status_warn",
        } <= names
        assert {"audit_events_no_update", "audit_events_no_delete", "audit_events_no_replace"} <= names
        assert "requests_rebuilt" not in names
        with pytest.raises(sqlite3.IntegrityError):
            await store.write(lambda db: db.execute("UPDATE requests SET status = 'bogus' WHERE id = 'old1'"))
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            await store.write(lambda db: db.execute("DELETE FROM audit_events"))
        assert await store.write(apply_migrations) == []


async def test_transition_all_moves_every_row_or_none(store):
    repo, audit = RequestRepo(store), AuditLog(store)
    await repo.create(granted("g1", T0 + timedelta(hours=1)), event())
    await repo.create(make_request("e1", extends="g1"), event())
    steps = [
        TransitionStep(
            "e1", RequestStatus.PENDING, RequestStatus.APPROVED, {"decided_by": "U0BOB"}, event("request.approved")
        ),
        TransitionStep(
            "e1", RequestStatus.APPROVED, RequestStatus.GRANTED, {"granted_at": T0}, event("access.extended")
        ),
        TransitionStep(
            "g1", RequestStatus.GRANTED, RequestStatus.REVOKED, {"ended_at": T0}, event("access.handed_over")
        ),
    ]
    moved = await repo.transition_all(steps)
    assert [r.status for r in moved] == [RequestStatus.APPROVED, RequestStatus.GRANTED, RequestStatus.REVOKED]
    assert (await repo.get("e1")).extends == "g1"

    await repo.create(granted("g2", T0 + timedelta(hours=1)), event())
    await repo.create(make_request("e2", extends="g2"), event())
    before = len(await audit.for_request("e2"))
    losing = [
        TransitionStep("e2", RequestStatus.PENDING, RequestStatus.APPROVED, {}, event("request.approved")),
        TransitionStep("g2", RequestStatus.PENDING, RequestStatus.CANCELLED, {}, event("x")),  # g2 is granted: loses
    ]
    with pytest.raises(InvalidTransition):
        await repo.transition_all(losing)
    assert (await repo.get("e2")).status is RequestStatus.PENDING
    assert len(await audit.for_request("e2")) == before


async def test_a_persons_page_is_newest_first_bounded_and_counted(store):
    repo = RequestRepo(store)
    for i in range(7):
        await repo.create(make_request(f"r{i}", created_at=T0 + timedelta(minutes=i)), event())
    page = await repo.page_for_requester("U0REQ", [RequestStatus.PENDING], 3)
    assert [r.id for r in page.items] == ["r6", "r5", "r4"] and page.total == 7
    assert (await repo.page_pending(2, exclude_requester="U0REQ")).total == 0
