"""Group commit on SQLite: writes queued together share one COMMIT, yet each behaves as a transaction of its own.

Each test holds the store's thread inside a write (`Gate`) while it queues the writes under test,
then lets it go: the queued writes are then one group, deterministically, with no timing involved.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from audit_cli import verify
from core.errors import InvalidTransition
from core.models import AuditEvent, RequestStatus
from core.secrets import SecretRegistry
from storage import AuditLog, RequestRepo, Store
from storage.audit import AuditWriter
from storage.sqlite_thread import WriteRolledBack

from .conftest import T0, event, make_request

pytestmark = pytest.mark.sqlite_only(
    "group commit is how the SQLite store commits; PostgreSQL commits each write alone"
)

REPO_ROOT = Path(__file__).resolve().parents[2]
WAIT = 30  # seconds: only ever reached if the store's thread is stuck, which fails the test


class Gate:
    """A write that holds the store's thread until `open()`, recording every statement run meanwhile."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.opened = threading.Event()
        self.statements: list[str] = []

    def hold(self, db: Any) -> None:
        db.conn.set_trace_callback(self.statements.append)
        self.entered.set()
        if not self.opened.wait(WAIT):
            raise TimeoutError("the gate was never opened")

    def open(self) -> None:
        self.opened.set()

    def after(self) -> list[str]:
        """The statements run after the gate's own write committed."""
        return self.statements[self.statements.index("COMMIT") + 1 :]

    def commits(self) -> int:
        return self.after().count("COMMIT")


async def queued_together(store: Store, fns: Sequence[Callable[[Any], Any]], gate: Gate | None = None) -> list[Any]:
    """Queue `fns` as writes while the thread is held, release it, and return each one's result or exception."""
    gate = gate or Gate()
    held = asyncio.ensure_future(store.write(gate.hold))
    await asyncio.to_thread(gate.entered.wait, WAIT)
    writes = [asyncio.ensure_future(store.write(fn)) for fn in fns]
    await asyncio.sleep(0)  # every write task runs up to its queue.put
    gate.open()
    await held
    results = await asyncio.gather(*writes, return_exceptions=True)
    await store.write(lambda db: db.conn.set_trace_callback(None))
    return results


async def rows(store: Store) -> list[str]:
    return await store.read(lambda db: [r[0] for r in db.execute("SELECT v FROM scratch ORDER BY n")])


def insert(value: str) -> Callable[[Any], int]:
    def fn(db: Any) -> int:
        db.execute("INSERT INTO scratch (v) VALUES (?)", [value])
        return int(db.execute("SELECT COUNT(*) FROM scratch").fetchone()[0])

    return fn


def insert_then_raise(value: str) -> Callable[[Any], None]:
    def fn(db: Any) -> None:
        db.execute("INSERT INTO scratch (v) VALUES (?)", [value])
        raise ValueError(f"{value} changed its mind")

    return fn


@pytest.fixture
async def file_store(tmp_path):
    """A SQLite file store (WAL, fsync'd commits, as the bot runs) with a scratch table to write in."""
    store = await Store.open(tmp_path / "jit.db")
    await store.write(lambda db: db.execute("CREATE TABLE scratch (n INTEGER PRIMARY KEY, v TEXT NOT NULL)"))
    yield store
    await store.close()


async def test_writes_queued_together_commit_once_and_each_sees_the_ones_queued_before_it(file_store):
    gate = Gate()
    results = await queued_together(file_store, [insert(f"w{i}") for i in range(5)], gate)
    assert results == [1, 2, 3, 4, 5]
    assert gate.commits() == 1  # one fsync for five writers
    assert await rows(file_store) == ["w0", "w1", "w2", "w3", "w4"]


async def test_a_group_is_at_most_64_writes_and_the_rest_form_the_next(file_store):
    gate = Gate()
    results = await queued_together(file_store, [insert(f"w{i}") for i in range(70)], gate)
    assert results == list(range(1, 71))
    assert gate.commits() == 2


async def test_a_lone_write_is_one_plain_transaction_without_savepoints(file_store):
    gate = Gate()
    assert await queued_together(file_store, [insert("only")], gate) == [1]
    statements = gate.after()
    assert statements[: statements.index("COMMIT") + 1] == [
        "BEGIN IMMEDIATE",
        "INSERT INTO scratch (v) VALUES ('only')",
        "SELECT COUNT(*) FROM scratch",
        "COMMIT",
    ]


async def test_a_write_that_raises_is_undone_alone_and_only_its_caller_sees_the_error(file_store):
    gate = Gate()
    first, failed, last = await queued_together(file_store, [insert("a"), insert_then_raise("b"), insert("c")], gate)
    assert first == 1
    assert isinstance(failed, ValueError) and str(failed) == "b changed its mind"
    assert last == 2  # it saw a, and not b's undone row
    assert gate.commits() == 1
    assert await rows(file_store) == ["a", "c"]


async def test_a_refused_statement_undoes_that_whole_write_and_nothing_else(file_store):
    await file_store.write(
        lambda db: db.execute(
            "CREATE TRIGGER no_x BEFORE INSERT ON scratch WHEN NEW.v = 'x' BEGIN SELECT RAISE(ABORT, 'no x'); END"
        )
    )

    def half_then_refused(db: Any) -> None:
        db.execute("INSERT INTO scratch (v) VALUES ('half')")
        db.execute("INSERT INTO scratch (v) VALUES ('x')")

    results = await queued_together(file_store, [insert("a"), half_then_refused, insert("c")])
    assert results[0] == 1 and results[2] == 2
    assert isinstance(results[1], sqlite3.IntegrityError) and "no x" in str(results[1])
    assert await rows(file_store) == ["a", "c"]  # not 'half': the refused write is undone entirely


async def test_a_failure_that_ends_the_whole_transaction_fails_the_writes_before_it_and_the_later_ones_commit(
    file_store,
):
    await file_store.write(
        lambda db: db.execute(
            "CREATE TRIGGER doom BEFORE INSERT ON scratch WHEN NEW.v = 'doom' "
            "BEGIN SELECT RAISE(ROLLBACK, 'the whole transaction goes'); END"
        )
    )
    results = await queued_together(file_store, [insert("a"), insert("b"), insert("doom"), insert("c"), insert("d")])
    assert all(isinstance(r, WriteRolledBack) for r in results[:2])  # their work went with the transaction
    assert "nothing of it was committed" in str(results[0])
    assert isinstance(results[2], sqlite3.IntegrityError) and "the whole transaction goes" in str(results[2])
    assert results[3:] == [1, 2]
    assert await rows(file_store) == ["c", "d"]
    assert not await file_store.read(lambda db: db.execute("SELECT 0").fetchone()[0])  # the store still works


async def test_a_write_that_ends_the_transaction_itself_is_not_reported_as_committed(file_store):
    def commits_on_its_own(db: Any) -> None:
        db.execute("INSERT INTO scratch (v) VALUES ('own')")
        db.execute("COMMIT")

    results = await queued_together(file_store, [insert("a"), commits_on_its_own, insert("c")])
    assert all(isinstance(r, sqlite3.OperationalError) for r in results[:2])
    assert "may or may not be committed" in str(results[1])
    assert results[2] == 3  # a fresh transaction, after what the COMMIT kept
    assert await rows(file_store) == ["a", "own", "c"]


async def test_a_commit_that_fails_reaches_every_write_of_the_group(file_store):
    await file_store.write(
        lambda db: db.executescript(
            "CREATE TABLE parent (id TEXT PRIMARY KEY);"
            "CREATE TABLE child (parent TEXT REFERENCES parent (id) DEFERRABLE INITIALLY DEFERRED);"
        )
    )

    def orphan(db: Any) -> str:
        db.execute("INSERT INTO child VALUES ('nobody')")  # accepted now, refused at COMMIT
        return "looked fine"

    results = await queued_together(file_store, [insert("a"), orphan, insert("c")])
    assert all(isinstance(r, sqlite3.IntegrityError) and "FOREIGN KEY" in str(r) for r in results)
    assert len({id(r) for r in results}) == 3  # each caller raises an exception of its own
    assert await rows(file_store) == []
    assert await file_store.write(insert("after")) == 1  # and the next write starts clean


async def test_two_approvals_queued_together_still_have_exactly_one_winner(file_store):
    repo = RequestRepo(file_store)
    await repo.create(make_request("r1"), event())
    gate = Gate()
    held = asyncio.ensure_future(file_store.write(gate.hold))
    await asyncio.to_thread(gate.entered.wait, WAIT)
    clicks = [
        asyncio.ensure_future(
            repo.transition(
                "r1",
                RequestStatus.PENDING,
                RequestStatus.APPROVED,
                changes={"decided_by": approver},
                audit=event("request.approved", approver, request_id="r1"),
            )
        )
        for approver in ("U0ANN", "U0BOB")
    ]
    await asyncio.sleep(0)
    gate.open()
    await held
    won, lost = await asyncio.gather(*clicks, return_exceptions=True)
    await file_store.write(lambda db: db.conn.set_trace_callback(None))
    assert gate.commits() == 1  # both clicks were in one group
    assert won.decided_by == "U0ANN"
    assert isinstance(lost, InvalidTransition) and lost.current == "approved"
    trail = await AuditLog(file_store).for_request("r1")
    assert [e.action for e in trail] == ["request.created", "request.approved"]
    assert (await verify(file_store, [])).problem is None


async def test_the_audit_chain_stays_whole_across_groups_with_failed_and_rolled_back_writes(file_store):
    writer = AuditWriter(SecretRegistry())
    await file_store.write(
        lambda db: db.execute(
            "CREATE TRIGGER doom BEFORE INSERT ON scratch WHEN NEW.v = 'doom' BEGIN SELECT RAISE(ROLLBACK, 'gone'); END"
        )
    )

    def audited(n: int, then: str | None = None) -> Callable[[Any], int]:
        def fn(db: Any) -> int:
            seq = writer.insert(db, AuditEvent(at=T0, actor="U0ANN", action="x.note", detail={"n": n}))
            if then == "raise":
                raise ValueError("after its audit row")
            if then == "doom":
                db.execute("INSERT INTO scratch (v) VALUES ('doom')")
            return seq

        return fn

    first = await queued_together(file_store, [audited(1), audited(2, "raise"), audited(3), audited(4, "doom")])
    second = await queued_together(file_store, [audited(5), audited(6, "raise"), audited(7)])
    committed = [r for r in first + second if isinstance(r, int)]
    assert committed == [1, 2]  # 1 and 3 went with 'doom'; 5 and 7 follow the chain's head
    result = await verify(file_store, [])
    assert result.problem is None and result.checked == 2 and result.head_seq == 2


async def test_a_write_cancelled_while_it_runs_still_commits(file_store):
    gate = Gate()

    def held_then_insert(db: Any) -> None:
        gate.hold(db)
        db.execute("INSERT INTO scratch (v) VALUES ('kept')")

    write = asyncio.ensure_future(file_store.write(held_then_insert))
    await asyncio.to_thread(gate.entered.wait, WAIT)
    write.cancel()
    gate.open()
    with pytest.raises(asyncio.CancelledError):
        await write
    await file_store.write(lambda db: db.conn.set_trace_callback(None))
    assert await rows(file_store) == ["kept"]  # "maybe committed" means it may well be


async def test_a_read_after_an_awaited_write_sees_it_and_a_read_never_sees_an_uncommitted_group(file_store):
    gate = Gate()
    held = asyncio.ensure_future(file_store.write(gate.hold))
    await asyncio.to_thread(gate.entered.wait, WAIT)
    write = asyncio.ensure_future(file_store.write(insert("queued")))
    read = asyncio.ensure_future(rows(file_store))
    await asyncio.sleep(0)
    gate.open()
    await held
    assert await write == 1
    assert await read in ([], ["queued"])  # submitted before the write returned: either moment is right
    assert await rows(file_store) == ["queued"]
    await file_store.write(lambda db: db.conn.set_trace_callback(None))


async def test_on_a_file_reads_run_beside_a_write_in_progress_and_see_only_what_is_committed(file_store):
    await file_store.write(insert("committed"))
    gate = Gate()

    def held_insert(db: Any) -> None:
        db.execute("INSERT INTO scratch (v) VALUES ('uncommitted')")
        gate.hold(db)

    write = asyncio.ensure_future(file_store.write(held_insert))
    await asyncio.to_thread(gate.entered.wait, WAIT)
    try:
        # The writer's thread is inside the write: the read does not queue behind it.
        assert await rows(file_store) == ["committed"]
        read_thread = await file_store.read(lambda db: threading.get_ident())
    finally:
        gate.open()
    await write
    write_thread = await file_store.write(lambda db: threading.get_ident())
    assert read_thread != write_thread
    assert await rows(file_store) == ["committed", "uncommitted"]  # once write() returned, every read sees it
    await file_store.write(lambda db: db.conn.set_trace_callback(None))


async def test_on_a_file_both_connections_run_with_wal_full_sync_and_foreign_keys(file_store):
    def pragmas(db: Any) -> dict[str, Any]:
        names = ("journal_mode", "synchronous", "foreign_keys", "busy_timeout", "query_only")
        return {name: db.execute(f"PRAGMA {name}").fetchone()[0] for name in names}

    expected = {"journal_mode": "wal", "synchronous": 2, "foreign_keys": 1, "busy_timeout": 5000}
    assert await file_store.write(pragmas) == {**expected, "query_only": 0}
    assert await file_store.read(pragmas) == {**expected, "query_only": 1}


async def test_in_memory_a_read_queued_behind_writes_waits_for_their_commit_and_sees_them(sqlite_store):
    await sqlite_store.write(lambda db: db.execute("CREATE TABLE scratch (n INTEGER PRIMARY KEY, v TEXT NOT NULL)"))
    gate = Gate()
    held = asyncio.ensure_future(sqlite_store.write(gate.hold))
    await asyncio.to_thread(gate.entered.wait, WAIT)
    writes = [asyncio.ensure_future(sqlite_store.write(insert(v))) for v in ("a", "b")]
    read = asyncio.ensure_future(rows(sqlite_store))  # ':memory:' has one connection: one queue for both
    later = asyncio.ensure_future(sqlite_store.write(insert("c")))
    await asyncio.sleep(0)
    gate.open()
    await held
    assert await asyncio.gather(*writes, read, later) == [1, 2, ["a", "b"], 3]
    await sqlite_store.write(lambda db: db.conn.set_trace_callback(None))
    control = [s for s in gate.after() if s in ("BEGIN IMMEDIATE", "BEGIN", "COMMIT")]
    # a and b in one group, then the read in a transaction of its own, then c: the read kept its place.
    assert control[:6] == ["BEGIN IMMEDIATE", "COMMIT", "BEGIN", "COMMIT", "BEGIN IMMEDIATE", "COMMIT"]


# ── the property ────────────────────────────────────────────────────────────────────────────────

KINDS = ("ok", "raise", "refused", "ends_transaction")
op = st.tuples(st.sampled_from(KINDS), st.integers(1, 9))
groups_of_ops = st.lists(st.lists(op, min_size=1, max_size=8), min_size=1, max_size=4)


def _op_fn(step: int, kind: str, k: int) -> Callable[[Any], int]:
    def fn(db: Any) -> int:
        db.execute("UPDATE acc SET v = (v * 31 + ?) % 1000003", [k])  # order matters: not commutative
        marker = {"ok": k, "raise": k, "refused": -1, "ends_transaction": -2}[kind]
        db.execute("INSERT INTO log (step, k) VALUES (?, ?)", [step, marker])
        if kind == "raise":
            raise ValueError(f"step {step} raised")
        return int(db.execute("SELECT v FROM acc").fetchone()[0])

    return fn


async def _run_property(groups: list[list[tuple[str, int]]]) -> None:
    store = await Store.open(":memory:")
    try:
        await store.write(
            lambda db: db.executescript(
                "CREATE TABLE acc (v INTEGER NOT NULL); INSERT INTO acc VALUES (0);"
                "CREATE TABLE log (step INTEGER PRIMARY KEY, k INTEGER NOT NULL);"
                "CREATE TRIGGER refused BEFORE INSERT ON log WHEN NEW.k = -1 BEGIN SELECT RAISE(ABORT, 'refused'); END;"
                "CREATE TRIGGER ends BEFORE INSERT ON log WHEN NEW.k = -2 BEGIN SELECT RAISE(ROLLBACK, 'ended'); END;"
            )
        )
        expected_acc, expected_log = 0, []
        step = 0
        for group in groups:
            numbered = [(step + i, kind, k) for i, (kind, k) in enumerate(group)]
            step += len(group)
            results = await queued_together(store, [_op_fn(s, kind, k) for s, kind, k in numbered])
            for index, ((s, kind, k), result) in enumerate(zip(numbered, results, strict=True)):
                ended_later = any(later == "ends_transaction" for _, later, _ in numbered[index + 1 :])
                if kind == "ok" and not ended_later:
                    # Success: the serial model, applied in submission order, agrees with what this write saw.
                    expected_acc = (expected_acc * 31 + k) % 1000003
                    expected_log.append((s, k))
                    assert result == expected_acc
                elif kind == "ok":
                    assert isinstance(result, WriteRolledBack)
                elif kind == "raise":
                    assert isinstance(result, ValueError) and str(result) == f"step {s} raised"
                else:
                    assert isinstance(result, sqlite3.IntegrityError)
                    assert str(result) == ("refused" if kind == "refused" else "ended")
        acc = await store.read(lambda db: db.execute("SELECT v FROM acc").fetchone()[0])
        log = await store.read(lambda db: [tuple(r) for r in db.execute("SELECT step, k FROM log ORDER BY step")])
        assert (acc, log) == (expected_acc, expected_log)
        assert not await store.read(lambda db: db.execute("SELECT COUNT(*) FROM log WHERE k < 0").fetchone()[0])
    finally:
        await store.close()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow], print_blob=False)
@given(groups=groups_of_ops)
def test_any_mix_of_succeeding_and_failing_writes_leaves_what_the_succeeding_ones_would_serially(groups):
    asyncio.run(_run_property(groups))


# ── a crash in the middle of a group ───────────────────────────────────────────────────────────

KILLED_MID_GROUP = textwrap.dedent(
    """
    import asyncio, sys
    from datetime import datetime, timezone
    from core.models import AuditEvent
    from storage import Store
    from storage.audit import AuditLog

    async def main():
        store = await Store.open(sys.argv[1])
        audit = AuditLog(store)
        commits = []
        await store.write(lambda db: db.conn.set_trace_callback(lambda s: s == "COMMIT" and commits.append(1)))
        at = datetime(2026, 11, 21, 15, 0, tzinfo=timezone.utc)

        async def writer(w):
            for i in range(100_000):
                n = w * 1_000_000 + i
                await audit.append(AuditEvent(at=at, actor="U0ANN", action="x.note", detail={"n": n}))
                # Acknowledged: the caller was told it is committed. Written before anything else runs.
                sys.stdout.write(f"{n} {len(commits)}\\n")
                sys.stdout.flush()

        await asyncio.gather(*(writer(w) for w in range(32)))

    asyncio.run(main())
    """
)


async def test_a_process_killed_while_groups_commit_loses_no_write_it_acknowledged(tmp_path):
    """32 writers append audit rows as fast as they can (so writes form groups); the process is
    killed with SIGKILL mid-stream. Every write whose caller heard "committed" is in the file after
    the restart, and the audit chain verifies."""
    path = tmp_path / "jit.db"
    async with await Store.open(path):
        pass  # migrated before the child starts
    child = subprocess.Popen(
        [sys.executable, "-c", KILLED_MID_GROUP, str(path)],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    acknowledged: list[int] = []
    commits = 0
    try:
        assert child.stdout is not None
        while len(acknowledged) < 600:
            line = await asyncio.to_thread(child.stdout.readline)
            assert line, child.stderr.read() if child.stderr else "the child ended"
            n, commits = (int(part) for part in line.split())
            acknowledged.append(n)
        child.send_signal(signal.SIGKILL)
        rest, _ = await asyncio.to_thread(child.communicate, timeout=WAIT)
        for line in rest.splitlines():  # acknowledged between the last read and the kill
            acknowledged.append(int(line.split()[0]))
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert child.returncode == -signal.SIGKILL
    assert commits < len(acknowledged)  # the writes did share commits
    async with await Store.open(path) as store:
        stored = await store.read(
            lambda db: {json.loads(r[0])["n"] for r in db.execute("SELECT detail FROM audit_events")}
        )
        result = await verify(store, [])
    assert set(acknowledged) <= stored
    assert result.problem is None


async def test_a_group_that_waits_past_the_busy_timeout_for_another_process_fails_whole_and_the_next_commits(
    tmp_path,
):
    """`bot.py identities` beside the bot holds the write lock longer than the busy timeout: every
    write of the group waiting for it is told it failed (nothing of it committed), and once the lock
    is free the next writes commit."""
    path = tmp_path / "jit.db"
    store = await Store.open(path, busy_timeout_ms=50)
    other = sqlite3.connect(path, timeout=0, isolation_level=None)
    try:
        await store.write(lambda db: db.execute("CREATE TABLE scratch (n INTEGER PRIMARY KEY, v TEXT NOT NULL)"))
        gate = Gate()
        # Hold the store's thread outside any transaction while the group queues up behind it.
        held = asyncio.ensure_future(store._thread.call(lambda: gate.hold(type("Db", (), {"conn": _NoTrace()})())))
        await asyncio.to_thread(gate.entered.wait, WAIT)
        writes = [asyncio.ensure_future(store.write(insert(v))) for v in ("a", "b", "c")]
        await asyncio.sleep(0)
        other.execute("BEGIN IMMEDIATE")
        gate.open()
        await held
        results = await asyncio.gather(*writes, return_exceptions=True)
        assert all(isinstance(r, sqlite3.OperationalError) and "locked" in str(r) for r in results), results
        other.execute("ROLLBACK")
        assert await rows(store) == []
        assert await store.write(insert("after")) == 1
    finally:
        other.close()
        await store.close()


class _NoTrace:
    def set_trace_callback(self, _callback: object) -> None:
        pass
