"""PostgreSQL write transactions that fail part-way commit nothing, in pipeline mode too: a statement whose
result nobody reads, an audit row the database refuses, a constraint checked only at COMMIT, a session
ended while it waits for the audit chain's lock. Whatever fails, a status change and its audit row commit
together or not at all, the chain verifies, and the store goes on working."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from datetime import timedelta

import psycopg
import pytest

from audit_cli import verify
from core.models import AuditEvent
from core.models import RequestStatus as S
from storage import AuditLog, RequestRepo, Store
from storage.concurrent_writes import concurrent
from storage.leases import LeaseRepo
from tests.storage.conftest import T0, event, make_request


@pytest.fixture
async def pg_store(postgres_dsn):
    store = await Store.open(postgres_dsn)
    yield store
    await store.close()


async def test_a_failing_statement_whose_result_nobody_reads_rolls_back_the_whole_transaction(pg_store):
    repo = RequestRepo(pg_store)
    await repo.create(make_request("r1"), event())

    def change(db):
        db.execute("UPDATE requests SET last_error = 'noted' WHERE id = 'r1'")
        db.execute("INSERT INTO requests (id) VALUES ('r1')")  # refused; its error arrives with COMMIT
        return "done"

    with pytest.raises(sqlite3.IntegrityError):
        await pg_store.write(concurrent(change))
    assert (await repo.get("r1")).last_error is None


async def test_a_status_change_whose_audit_row_is_refused_is_not_made(pg_store):
    repo = RequestRepo(pg_store)
    await repo.create(make_request("r1"), event())
    nameless = AuditEvent(at=T0, actor=None, action="request.approved")  # type: ignore[arg-type]
    with pytest.raises(sqlite3.IntegrityError):
        await repo.transition("r1", S.PENDING, S.APPROVED, audit=nameless)
    assert (await repo.get("r1")).status is S.PENDING
    assert [e.action for e in await AuditLog(pg_store).list()] == ["request.created"]
    await repo.transition("r1", S.PENDING, S.APPROVED, audit=event("request.approved"))
    assert (await verify(pg_store, [])).problem is None


async def test_a_status_change_refused_at_commit_leaves_neither_the_change_nor_its_audit_row(pg_store, postgres_dsn):
    repo = RequestRepo(pg_store)
    await repo.create(make_request("r1"), event())
    with psycopg.connect(postgres_dsn, autocommit=True) as admin:  # a check PostgreSQL runs only at COMMIT
        admin.execute(
            "CREATE FUNCTION refuse_approval() RETURNS trigger LANGUAGE plpgsql AS "
            "$$ BEGIN IF NEW.status = 'approved' THEN RAISE EXCEPTION 'refused at commit'; END IF; RETURN NEW; END $$"
        )
        admin.execute(
            "CREATE CONSTRAINT TRIGGER at_commit AFTER UPDATE ON requests DEFERRABLE INITIALLY DEFERRED "
            "FOR EACH ROW EXECUTE FUNCTION refuse_approval()"
        )
    with pytest.raises(sqlite3.DatabaseError, match="refused at commit"):
        await repo.transition("r1", S.PENDING, S.APPROVED, audit=event("request.approved"))
    assert (await repo.get("r1")).status is S.PENDING
    assert [e.action for e in await AuditLog(pg_store).list()] == ["request.created"]
    await AuditLog(pg_store).append(event("config.loaded", actor="jitbot"))
    result = await verify(pg_store, [])
    assert (result.problem, result.checked) == (None, 2)


async def test_a_transition_whose_session_is_killed_while_it_waits_for_the_chain_lock_commits_nothing(postgres_dsn):
    first, second = await Store.open(postgres_dsn), await Store.open(postgres_dsn)
    try:
        repo = RequestRepo(first)
        await repo.create(make_request("r1"), event())
        holding, release = threading.Event(), threading.Event()
        writer = RequestRepo(first)._audit

        def serialised(db):  # another writer holding the chain lock
            holding.set()
            release.wait(30)
            writer.insert(db, event("config.loaded", actor="jitbot"))

        other = asyncio.ensure_future(first.write(serialised))
        await asyncio.to_thread(holding.wait, 10)
        approve = asyncio.ensure_future(
            RequestRepo(second).transition("r1", S.PENDING, S.APPROVED, audit=event("request.approved"))
        )
        with psycopg.connect(postgres_dsn, autocommit=True) as admin:
            waiting = await _lock_waiter(admin)
            admin.execute("SELECT pg_terminate_backend(%s)", [waiting])
        with pytest.raises(sqlite3.OperationalError):
            await approve
        release.set()
        await other
        assert (await repo.get("r1")).status is S.PENDING
        await RequestRepo(second).transition("r1", S.PENDING, S.APPROVED, audit=event("request.approved"))
        assert [e.action for e in await AuditLog(first).list()] == [
            "request.created",
            "config.loaded",
            "request.approved",
        ]
        assert (await verify(first, [])).problem is None
    finally:
        release.set()
        await first.close()
        await second.close()


async def test_an_expired_lease_wanted_by_nine_owners_on_three_replicas_is_taken_by_one(postgres_dsn):
    stores = [await Store.open(postgres_dsn) for _ in range(3)]
    try:
        names = [f"request:r{i}" for i in range(20)]
        dead = LeaseRepo(stores[0], owner="dead", wall=lambda: T0 - timedelta(hours=1))  # its leases long expired
        for _ in range(3):
            assert await dead.claim(names, 5.0) == set(names)
            owners = [LeaseRepo(s, owner=f"replica-{n}-{k}") for n, s in enumerate(stores) for k in range(3)]
            taken = await asyncio.gather(*(owner.claim(names, 30.0) for owner in owners))
            assert sorted(name for t in taken for name in t) == sorted(names)  # each name once
            await asyncio.gather(*(owner.release(names) for owner in owners))
    finally:
        for store in stores:
            await store.close()


async def _lock_waiter(admin: psycopg.Connection) -> int:
    """The pid of a session of this database waiting for a lock (polled, never timed)."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        row = admin.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
        ).fetchone()
        if row:
            return int(row[0])
        await asyncio.sleep(0.01)
    raise AssertionError("no session ever waited on a lock")
