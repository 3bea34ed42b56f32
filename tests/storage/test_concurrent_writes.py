"""Replicas writing at once: status changes and leases run beside one another on PostgreSQL (no store-wide
lock), yet every decision has one winner, every lease one holder, and the audit chain one verified order.

Each "replica" is a store of its own on one database, as each bot process has its own pool.
"""

from __future__ import annotations

import asyncio
import random
import sqlite3
import threading
import time

import psycopg
import pytest

from audit_cli import verify
from core.errors import InvalidTransition
from core.models import RequestStatus as S
from storage import AuditLog, IdentityStore, RequestRepo, Store, postgres
from storage import requests as storage_requests
from storage.approvals import ApprovalRepo
from storage.concurrent_writes import concurrent
from storage.leases import LeaseRepo
from storage.pg_database import WRITE_LOCK
from storage.reminders import ReminderRepo
from tests.storage.conftest import event, make_request

REPLICAS = 3


@pytest.fixture
async def replicas(databases):
    """Three stores on one database (on SQLite, three stores on one file)."""
    where = databases.where("shared.db")
    stores = [await Store.open(where) for _ in range(REPLICAS)]
    yield stores
    for store in stores:
        await store.close()


async def test_approvals_of_many_requests_racing_on_three_replicas_each_win_once_and_the_chain_verifies(replicas):
    repos = [RequestRepo(s) for s in replicas]
    ids = [f"r{i:02d}" for i in range(20)]
    await asyncio.gather(*(repos[i % REPLICAS].create(make_request(rid), event()) for i, rid in enumerate(ids)))

    async def approve(repo: RequestRepo, rid: str, who: str):
        return await repo.transition(
            rid, S.PENDING, S.APPROVED, changes={"decided_by": who}, audit=event("request.approved", actor=who)
        )

    # Every request clicked on every replica at once, and each approval followed by its grant on the winner.
    results = await asyncio.gather(
        *(approve(repo, rid, f"U{n}") for rid in ids for n, repo in enumerate(repos)), return_exceptions=True
    )
    winners = [r for r in results if not isinstance(r, BaseException)]
    assert all(isinstance(r, InvalidTransition) for r in results if isinstance(r, BaseException))
    assert sorted(w.id for w in winners) == ids
    await asyncio.gather(
        *(
            repos[i % REPLICAS].transition(w.id, S.APPROVED, S.GRANTED, audit=event("request.granted", actor="jitbot"))
            for i, w in enumerate(winners)
        )
    )
    await asyncio.gather(*(AuditLog(s).append(event("config.loaded", actor="jitbot")) for s in replicas))

    result = await verify(replicas[0], [])
    assert result.problem is None
    assert result.checked == result.head_seq == 3 * len(ids) + REPLICAS  # created, approved, granted; no gaps
    for rid in ids:
        actions = [e.action for e in await AuditLog(replicas[0]).for_request(rid)]
        assert actions == ["request.created", "request.approved", "request.granted"]


async def test_replicas_claiming_overlapping_leases_in_opposite_orders_give_each_one_holder(replicas):
    leases = [LeaseRepo(s, owner=f"replica-{n}") for n, s in enumerate(replicas)]
    names = [f"request:r{i}" for i in range(30)]
    orders = [names, names[::-1], names[10:] + names[:10]]
    taken = await asyncio.gather(*(lease.claim(order, 30.0) for lease, order in zip(leases, orders, strict=True)))
    assert set().union(*taken) == set(names)
    assert sum(len(t) for t in taken) == len(names)  # never two holders of a name
    renewed = await asyncio.gather(*(lease.renew(names, 30.0) for lease in leases))
    assert renewed == taken
    await asyncio.gather(*(lease.release(names) for lease in leases))
    assert await leases[0].claim(names, 30.0) == set(names)


@pytest.mark.parametrize("holder_does", ["renew", "release"])
async def test_a_holder_renewing_or_releasing_beside_a_replica_claiming_the_same_names_never_deadlock(
    postgres_dsn, monkeypatch, holder_does
):
    monkeypatch.setattr(postgres, "WRITE_ATTEMPTS", 1)  # a deadlock would reach the caller
    holder_store, claimer_store = await Store.open(postgres_dsn), await Store.open(postgres_dsn)
    try:
        holder, claimer = LeaseRepo(holder_store, owner="holder"), LeaseRepo(claimer_store, owner="claimer")
        for name in ["lease:b", "lease:c", "lease:a"]:  # on disk in this order, not sorted
            assert await holder.claim([name], 30.0) == {name}
        names = ["lease:a", "lease:b", "lease:c"]
        with psycopg.connect(postgres_dsn) as other:  # a third session has lease:c for a moment
            other.execute("SELECT 1 FROM leases WHERE name = 'lease:c' FOR UPDATE")
            held = asyncio.ensure_future(holder.renew(names, 30.0) if holder_does == "renew" else holder.release(names))
            await _until_sessions_wait_on_locks(postgres_dsn, 1)
            claim = asyncio.ensure_future(claimer.claim(names, 30.0))
            await _until_sessions_wait_on_locks(postgres_dsn, 2)
            other.commit()
            outcomes = await asyncio.gather(held, claim, return_exceptions=True)
        assert not [o for o in outcomes if isinstance(o, BaseException)], outcomes
        if holder_does == "renew":
            assert outcomes == [set(names), set()]  # renewed before the claim looked: still the holder's
        else:
            assert outcomes[1] in (set(), set(names))  # given back: taken if the claim came after
    finally:
        await holder_store.close()
        await claimer_store.close()


async def test_a_guarded_update_that_loses_a_race_to_another_allowed_status_reads_it_again_and_applies(postgres_dsn):
    store = await Store.open(postgres_dsn)
    try:
        repo = RequestRepo(store)
        await repo.create(make_request("r1"), event())
        await repo.transition("r1", S.PENDING, S.APPROVED, audit=event("request.approved"))
        with psycopg.connect(postgres_dsn) as other:  # another writer, mid-transaction, has moved it on
            other.execute("UPDATE requests SET status = 'granted' WHERE id = 'r1'")
            update = asyncio.ensure_future(
                repo.update("r1", {"last_error": "chat.update failed"}, expected_status={S.APPROVED, S.GRANTED})
            )
            await _until_waiting_on_a_row_lock(postgres_dsn, other)
            other.commit()
            updated = await update
        assert (updated.status, updated.last_error) == (S.GRANTED, "chat.update failed")
        assert (await repo.get("r1")).last_error == "chat.update failed"
    finally:
        await store.close()


async def test_a_transition_deadlocked_with_a_serialised_write_is_run_again_and_both_commit(postgres_dsn):
    first, second = await Store.open(postgres_dsn), await Store.open(postgres_dsn)
    try:
        repo = RequestRepo(first)
        await repo.create(make_request("r1"), event())
        serialised_holds_lock, transition_holds_row = threading.Event(), threading.Event()
        audit = RequestRepo(second)._audit
        runs = {"serialised": 0, "concurrent": 0}

        def serialised(db):  # takes the store-wide lock first, then wants the request's row
            runs["serialised"] += 1
            serialised_holds_lock.set()
            transition_holds_row.wait(10)
            db.execute("UPDATE requests SET last_error = 'noted' WHERE id = 'r1'")
            audit.insert(db, event("request.noted", request_id="r1"))

        def transition(db):  # holds the row first, then wants the lock for its audit row
            runs["concurrent"] += 1
            serialised_holds_lock.wait(10)
            # RETURNING, read: the row is locked on the server before the other is told so.
            db.execute(
                "UPDATE requests SET status = 'approved' WHERE id = 'r1' AND status = 'pending' RETURNING id"
            ).fetchall()
            transition_holds_row.set()
            audit.insert(db, event("request.approved", request_id="r1"))

        await asyncio.gather(first.write(serialised), second.write(concurrent(transition)))

        # PostgreSQL rolled one back and it ran again (on a busy machine the rerun may meet the other once
        # more before it commits, and be rolled back and run again too).
        assert runs["serialised"] + runs["concurrent"] >= 3
        request = await repo.get("r1")
        assert (request.status, request.last_error) == (S.APPROVED, "noted")
        assert sorted(e.action for e in await AuditLog(first).for_request("r1")) == [
            "request.approved",
            "request.created",
            "request.noted",
        ]
        assert (await verify(first, [])).problem is None
    finally:
        await first.close()
        await second.close()


async def test_the_server_ends_a_replica_session_within_seconds_once_its_host_stops_answering(postgres_dsn):
    # A session holds the audit chain's lock (and its rows' locks) until its COMMIT. If its replica's
    # machine dies or is cut off mid-transaction, no FIN or RST reaches the server: without keepalive
    # probes the server keeps the session, and every other replica's audit rows (each revocation's
    # included) wait for the operating system's TCP timeout, over two hours by default.
    store = await Store.open(postgres_dsn)
    try:
        idle, interval, count = await store.read(
            lambda db: db.execute(
                "SELECT current_setting('tcp_keepalives_idle')::int, current_setting('tcp_keepalives_interval')::int, "
                "current_setting('tcp_keepalives_count')::int"
            ).fetchone()
        )
        assert 0 < idle + interval * count <= 15
    finally:
        await store.close()


@pytest.mark.parametrize("kind", ["concurrent", "serialised"])
async def test_a_replica_stalled_while_holding_the_audit_chain_lock_does_not_stop_the_others(
    postgres_dsn, monkeypatch, kind
):
    # A process stopped mid-transaction (SIGSTOP, a debugger, a paused container) still answers TCP from
    # its kernel, so only a limit on how long a transaction may sit idle frees the chain's lock it holds.
    # Serialised writes (identities, tokens, reminders, cursors, bulk inserts) hold it from their start.
    wrap = concurrent if kind == "concurrent" else (lambda fn: fn)
    monkeypatch.setattr(postgres, "IDLE_IN_WRITE_MS", 300)  # seconds in production; short for the test
    stalled_store, other = await Store.open(postgres_dsn), await Store.open(postgres_dsn)
    try:
        repo = RequestRepo(other)
        await repo.create(make_request("r1"), event())
        holds_lock, resume = threading.Event(), threading.Event()
        writer = RequestRepo(stalled_store)._audit

        def stalls(db):  # an audit row written, then the process stops before its COMMIT
            writer.insert(db, event("config.loaded", actor="jitbot"))
            db.execute("SELECT 1").fetchall()  # the row and the lock are on the server now
            holds_lock.set()
            resume.wait(30)

        stalled = asyncio.ensure_future(stalled_store.write(wrap(stalls)))
        await asyncio.to_thread(holds_lock.wait, 10)
        approved = await repo.transition("r1", S.PENDING, S.APPROVED, audit=event("request.approved"))
        resume.set()
        with pytest.raises(sqlite3.DatabaseError):
            await stalled  # its session was ended: nothing of it committed
        assert approved.status is S.APPROVED
        # The stalled replica, running again, writes on a fresh connection.
        await RequestRepo(stalled_store).transition("r1", S.APPROVED, S.GRANTED, audit=event("request.granted"))
        actions = [e.action for e in await AuditLog(other).list()]
        assert actions == ["request.created", "request.approved", "request.granted"]
        assert (await verify(other, [])).problem is None
    finally:
        resume.set()
        await stalled_store.close()
        await other.close()


async def test_a_bulk_import_whose_rows_take_long_to_encode_is_not_cut_short_by_the_idle_limit(
    postgres_dsn, monkeypatch
):
    # The idle limit ends a write transaction whose replica says nothing for a while. A bulk import
    # (a million rows take seconds to encode) must do that work before its transaction, not inside it.
    monkeypatch.setattr(postgres, "IDLE_IN_WRITE_MS", 300)
    encode = storage_requests.request_to_values

    def slow_encode(request, encoders):
        time.sleep(0.4)  # one row of a long import, squeezed into one slow row
        return encode(request, encoders)

    monkeypatch.setattr(storage_requests, "request_to_values", slow_encode)
    store = await Store.open(postgres_dsn)
    try:
        repo = RequestRepo(store)
        assert await repo.create_many([(make_request(f"r{i}"), event()) for i in range(2)]) == 2
        assert [e.action for e in await AuditLog(store).list()] == ["request.created"] * 2
        assert (await verify(store, [])).problem is None
    finally:
        await store.close()


@pytest.mark.parametrize("level", ["repeatable read", "serializable"])
async def test_replicas_keep_one_audit_chain_on_a_database_whose_default_isolation_is_stricter(postgres_dsn, level):
    # An operator may set a stricter default for the whole database. The chain head must still be read
    # after its lock is taken: a snapshot from the transaction's first statement would miss rows
    # committed meanwhile and write a seq that is taken already.
    with psycopg.connect(postgres_dsn, autocommit=True) as admin:
        admin.execute(f"ALTER DATABASE {admin.info.dbname} SET default_transaction_isolation TO '{level}'")
    stores = [await Store.open(postgres_dsn) for _ in range(REPLICAS)]
    try:
        repos = [RequestRepo(s) for s in stores]
        ids = [f"r{i:02d}" for i in range(10)]
        await asyncio.gather(*(repos[i % REPLICAS].create(make_request(rid), event()) for i, rid in enumerate(ids)))
        results = await asyncio.gather(
            *(
                repo.transition(rid, S.PENDING, S.APPROVED, audit=event("request.approved", actor=f"U{n}"))
                for rid in ids
                for n, repo in enumerate(repos)
            ),
            return_exceptions=True,
        )
        assert [r for r in results if isinstance(r, BaseException) and not isinstance(r, InvalidTransition)] == []
        assert sorted(r.id for r in results if not isinstance(r, BaseException)) == ids
        result = await verify(stores[0], [])
        assert (result.problem, result.checked) == (None, 2 * len(ids))
        reads = await stores[0].read(lambda db: db.execute("SHOW transaction_isolation").fetchone()[0])
        assert reads == "repeatable read"  # reads keep their one snapshot
    finally:
        for store in stores:
            await store.close()


async def test_reads_are_one_read_only_snapshot_and_the_writes_after_them_on_the_same_connection_are_not(
    postgres_dsn,
):
    """The isolation a read asks for goes in its BEGIN; a pooled connection must not carry it (or READ ONLY)
    into the next write, whose compare-and-sets rely on READ COMMITTED."""
    store = await Store.open(postgres_dsn)
    try:
        settings = "SELECT current_setting('transaction_isolation'), current_setting('transaction_read_only')"
        for _ in range(3):
            assert await store.read(lambda db: tuple(db.execute(settings).fetchone())) == ("repeatable read", "on")
            written = await store.write(lambda db: tuple(db.execute(settings).fetchone()))
            assert written == ("read committed", "off")
    finally:
        await store.close()


@pytest.mark.parametrize("change", ["add", "withdraw"])
async def test_an_approval_racing_a_cancellation_on_another_replica_never_deadlocks(postgres_dsn, monkeypatch, change):
    # No second attempt: a deadlock PostgreSQL breaks would reach the approver as an error (and cost
    # every waiter a deadlock_timeout, a second, before that).
    monkeypatch.setattr(postgres, "WRITE_ATTEMPTS", 1)
    first, second = await Store.open(postgres_dsn), await Store.open(postgres_dsn)
    try:
        repo, approvals = RequestRepo(first), ApprovalRepo(first)
        await repo.create(make_request("r1"), event())
        await approvals.add("r1", "U0A", event("request.approval_counted", actor="U0A"))
        with psycopg.connect(postgres_dsn) as committing:  # a third writer, holding the chain lock to its COMMIT
            committing.execute("SELECT pg_advisory_xact_lock(%s)", [WRITE_LOCK])
            approval = asyncio.ensure_future(
                approvals.add("r1", "U0B", event("request.approval_counted", actor="U0B"))
                if change == "add"
                else approvals.withdraw("r1", ["U0A"], event("request.approvals_withdrawn", actor="jitbot"))
            )
            await _until_sessions_wait_on_locks(postgres_dsn, 1)
            cancel = asyncio.ensure_future(
                RequestRepo(second).transition("r1", S.PENDING, S.CANCELLED, audit=event("request.cancelled"))
            )
            await _until_sessions_wait_on_locks(postgres_dsn, 2)
            committing.commit()
            outcomes = await asyncio.gather(approval, cancel, return_exceptions=True)

        assert not [o for o in outcomes if isinstance(o, sqlite3.OperationalError)], outcomes
        assert not isinstance(outcomes[1], BaseException)  # the cancellation never loses to an approval
        assert (await repo.get("r1")).status is S.CANCELLED
        actions = [e.action for e in await AuditLog(first).for_request("r1")]
        assert actions[-1] == "request.cancelled"  # an approval that went first is recorded before it, or refused
        assert isinstance(outcomes[0], InvalidTransition) or len(actions) == 4
        assert (await verify(first, [])).problem is None
    finally:
        await first.close()
        await second.close()


async def test_every_kind_of_write_on_three_replicas_at_once_meets_no_deadlock_and_one_chain(postgres_dsn, monkeypatch):
    # Status changes, approvals, leases and guarded updates (concurrent) beside reminders, identities and
    # plain audit rows (serialised), all on the same requests: none may wait on another in a cycle.
    monkeypatch.setattr(postgres, "WRITE_ATTEMPTS", 1)  # a deadlock would reach the caller
    stores = [await Store.open(postgres_dsn) for _ in range(REPLICAS)]
    try:
        repo = RequestRepo(stores[0])
        ids = [f"r{i:02d}" for i in range(30)]
        for rid in ids:
            await repo.create(make_request(rid), event())
        rng = random.Random(15)

        def one(store: Store, rid: str, n: int, kind: str):
            if kind == "approval":
                return ApprovalRepo(store).add(rid, f"U{n}", event("request.approval_counted", actor=f"U{n}"))
            if kind == "approve":
                return RequestRepo(store).transition(rid, S.PENDING, S.APPROVED, audit=event("request.approved"))
            if kind == "cancel":
                return RequestRepo(store).transition(rid, S.PENDING, S.CANCELLED, audit=event("request.cancelled"))
            if kind == "remind":
                return ReminderRepo(store).claim(rid, 1, False, event("request.reminded", actor="jitbot"))
            if kind == "identity":
                return IdentityStore(store).set(f"U{n}{rid}", "*", f"u{n}@example.com", actor="U0ADMIN")
            if kind == "append":
                return AuditLog(store).append(event("config.loaded", actor="jitbot"))
            if kind == "lease":
                return LeaseRepo(store, owner=f"replica-{n}").claim([f"request:{rid}", f"request:{ids[0]}"], 5.0)
            return RequestRepo(store).update(rid, {"last_error": "noted"}, expected_status={S.PENDING, S.APPROVED})

        kinds = ["approval", "approve", "cancel", "remind", "identity", "append", "lease", "update"]
        jobs = [one(rng.choice(stores), rid, n, rng.choice(kinds)) for rid in ids for n in range(4)]
        rng.shuffle(jobs)
        results = await asyncio.gather(*jobs, return_exceptions=True)

        assert [r for r in results if isinstance(r, BaseException) and not isinstance(r, InvalidTransition)] == []
        result = await verify(stores[0], [])
        assert (result.problem, result.checked) == (None, result.head_seq)
    finally:
        for store in stores:
            await store.close()


async def _until_sessions_wait_on_locks(dsn: str, count: int) -> None:
    """Until `count` sessions of this database wait for a lock (polled, never timed)."""
    deadline = time.monotonic() + 30
    with psycopg.connect(dsn, autocommit=True) as watcher:
        while time.monotonic() < deadline:
            row = watcher.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
            ).fetchone()
            if row and row[0] >= count:
                return
            await asyncio.sleep(0.01)
    raise AssertionError(f"fewer than {count} sessions ever waited on a lock")


async def _until_waiting_on_a_row_lock(dsn: str, holder: psycopg.Connection) -> None:
    """Until some other session of this database waits for a lock `holder` has (polled, never timed)."""
    holder_pid = holder.info.backend_pid
    deadline = time.monotonic() + 30
    with psycopg.connect(dsn, autocommit=True) as watcher:
        while time.monotonic() < deadline:
            row = watcher.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                "AND %s = ANY(pg_blocking_pids(pid))",
                [holder_pid],
            ).fetchone()
            if row and row[0]:
                return
            await asyncio.sleep(0.01)
    raise AssertionError("no session ever waited on the other writer's row")
