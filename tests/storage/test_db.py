from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import textwrap
import threading
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from core.errors import StartupError
from core.models import RequestStatus
from storage import RequestRepo, Store, from_db_time, to_db_time
from storage.audit import AuditLog
from storage.postgres import PgStore

from .conftest import event, make_request

REPO_ROOT = Path(__file__).resolve().parents[2]


async def test_file_store_uses_wal_full_sync_and_foreign_keys(tmp_path):
    async with await Store.open(tmp_path / "nested" / "dir" / "jit.db") as store:
        pragmas = await store.read(
            lambda db: {
                name: db.execute(f"PRAGMA {name}").fetchone()[0]
                for name in ("journal_mode", "synchronous", "foreign_keys", "busy_timeout")
            }
        )
    assert pragmas == {"journal_mode": "wal", "synchronous": 2, "foreign_keys": 1, "busy_timeout": 5000}
    assert (tmp_path / "nested" / "dir" / "jit.db").exists()


async def test_all_work_runs_off_the_event_loop_and_on_sqlite_on_one_dedicated_thread(store):
    read_thread = await store.read(lambda db: threading.get_ident())
    write_thread = await store.write(lambda db: threading.get_ident())
    assert threading.get_ident() not in (read_thread, write_thread)
    if store.dialect == "sqlite":
        assert read_thread == write_thread


async def test_write_commits_everything_or_nothing(store):
    def insert_then_fail(db):
        db.execute("INSERT INTO identity_overrides VALUES ('U1', '*', 'a', 'x', 'y')")
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        await store.write(insert_then_fail)
    assert await store.read(lambda db: db.execute("SELECT COUNT(*) FROM identity_overrides").fetchone()[0]) == 0

    await store.write(lambda db: db.execute("INSERT INTO identity_overrides VALUES ('U1', '*', 'a', 'x', 'y')"))
    assert await store.read(lambda db: db.execute("SELECT COUNT(*) FROM identity_overrides").fetchone()[0]) == 1


async def test_sqlite_leaves_no_transaction_open_after_a_write_or_a_read(tmp_path):
    async with await Store.open(tmp_path / "jit.db") as store:
        await store.write(lambda db: db.execute("INSERT INTO identity_overrides VALUES ('U1', '*', 'a', 'x', 'y')"))
        assert await store.read(lambda db: db.conn.in_transaction)  # a read is one snapshot (test_read_snapshot.py)
        # ...that ends with the read, and another process takes the write lock at once: nothing is left open.
        assert not store._require_db().conn.in_transaction  # the store's thread is idle between calls
        other = sqlite3.connect(tmp_path / "jit.db", timeout=0, isolation_level=None)
        try:
            other.execute("BEGIN IMMEDIATE")
            other.execute("ROLLBACK")
        finally:
            other.close()


async def test_read_cannot_write(store):
    with pytest.raises(sqlite3.OperationalError, match="readonly|read-only"):
        await store.read(lambda db: db.execute("INSERT INTO identity_overrides VALUES ('U1', '*', 'a', 'x', 'y')"))
    # and a write after a refused read still works
    await store.write(lambda db: db.execute("INSERT INTO identity_overrides VALUES ('U1', '*', 'a', 'x', 'y')"))


async def test_closed_store_refuses_work_and_close_is_idempotent(tmp_path):
    store = await Store.open(tmp_path / "jit.db")
    await store.close()
    await store.close()
    assert store.closed
    with pytest.raises(RuntimeError, match="closed"):
        await store.read(lambda db: 1)


async def test_database_from_a_newer_jitbot_is_refused(tmp_path):
    path = tmp_path / "jit.db"
    async with await Store.open(path):
        pass
    conn = sqlite3.connect(path)
    conn.execute(
        "INSERT INTO _sqlite_migrations (migration_set, name, applied_at) VALUES ('jitbot', 'm999_future', 'x')"
    )
    conn.commit()
    conn.close()
    with pytest.raises(StartupError, match="newer jitbot.*m999_future"):
        await Store.open(path)


async def test_a_file_that_is_not_a_database_is_a_startup_error(tmp_path):
    path = tmp_path / "jit.db"
    path.write_bytes(b"this is not sqlite, just some text long enough to fill a header" * 10)
    with pytest.raises(StartupError, match="jit.db"):
        await Store.open(path)


async def test_unwritable_location_is_a_startup_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(StartupError, match="cannot open database"):
        await Store.open(blocker / "jit.db")


@pytest.mark.parametrize(
    "value, stored",
    [
        (datetime(2026, 11, 21, 15, 59, 11, 123456, tzinfo=UTC), "2026-11-21T15:59:11.123456Z"),
        (datetime(2026, 11, 21, 15, 59, 11, tzinfo=UTC), "2026-11-21T15:59:11.000000Z"),
        (
            datetime(2026, 11, 21, 17, 29, 11, 5, tzinfo=timezone(timedelta(hours=1, minutes=30))),
            "2026-11-21T15:59:11.000005Z",
        ),
        (datetime(2026, 3, 8, 3, 30, tzinfo=ZoneInfo("America/New_York")), "2026-03-08T07:30:00.000000Z"),
        (datetime(999, 1, 2, 3, 4, 5, tzinfo=UTC), "0999-01-02T03:04:05.000000Z"),
    ],
    ids=["micro", "whole-second", "offset", "zoneinfo-after-dst-switch", "three-digit-year"],
)
def test_time_format_is_fixed_width_utc_and_round_trips(value, stored):
    assert to_db_time(value) == stored
    back = from_db_time(stored)
    assert back == value and back.tzinfo is not None and back.utcoffset() == timedelta(0)


def test_naive_datetimes_are_refused():
    with pytest.raises(ValueError, match="naive"):
        to_db_time(datetime(2026, 1, 1))


CRASH_SCRIPT = textwrap.dedent(
    """
    import asyncio, os, signal, sys
    from datetime import datetime, timezone
    from core.models import AccessRequest, AuditEvent, RequestStatus
    from storage import RequestRepo, Store

    async def main():
        store = await Store.open(sys.argv[1])
        repo = RequestRepo(store)
        now = datetime(2026, 11, 21, 15, 0, tzinfo=timezone.utc)
        await repo.transition(
            "r1", RequestStatus.PENDING, RequestStatus.APPROVED,
            changes={"decided_by": "U0APPROVER", "decided_at": now},
            audit=AuditEvent(at=now, actor="U0APPROVER", action="request.approved"),
        )
        # Die the hardest way right after the commit: no close, no checkpoint, no atexit.
        os.kill(os.getpid(), signal.SIGKILL)

    asyncio.run(main())
    """
)


async def test_committed_transition_survives_sigkill(tmp_path):
    path = tmp_path / "jit.db"
    async with await Store.open(path) as store:
        await RequestRepo(store).create(make_request("r1"), event())

    proc = subprocess.run(
        [sys.executable, "-c", CRASH_SCRIPT, str(path)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    # The transition lives only in the WAL at this point: recovery has to read it from there.
    assert os.path.getsize(str(path) + "-wal") > 0

    async with await Store.open(path) as store:
        request = await RequestRepo(store).get("r1")
        trail = await AuditLog(store).for_request("r1")
    assert request.status is RequestStatus.APPROVED
    assert request.decided_by == "U0APPROVER"
    assert [(e.action, e.status_from, e.status_to) for e in trail] == [
        ("request.created", None, "pending"),
        ("request.approved", "pending", "approved"),
    ]


# ── the database is a file path; one bot at a time runs on it ───────────────────────────────────────


@pytest.mark.parametrize(
    "url",
    [
        "mysql://root:pw@localhost/jit",
        "sqlite:///data/jitbot.db",
        "file:jitbot.db?mode=rwc",
        "sqlite:jitbot.db",
        "PostgreSQL:jitbot",
    ],
)
async def test_a_database_url_is_refused_and_nothing_is_created(tmp_path, monkeypatch, url):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(StartupError) as caught:
        await Store.open(url)
    scheme = url.split(":", 1)[0]
    assert f"{scheme}:" in str(caught.value) and "SQLite file or in PostgreSQL" in str(caught.value)
    assert ":pw@" not in str(caught.value)  # a URL may carry a password
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://jitbot:pg-pass-9f8e@db.internal:5432/jitbot",
        "postgres://jitbot@db.internal/jitbot?password=pg-pass-9f8e",
    ],
)
async def test_a_postgresql_url_that_cannot_be_reached_is_refused_without_its_password(tmp_path, monkeypatch, url):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(StartupError) as caught:
        await PgStore.open(url, connect_timeout=1)
    message = str(caught.value)
    assert "cannot connect to the PostgreSQL database" in message and "db.internal" in message
    assert "pg-pass" not in message
    assert list(tmp_path.iterdir()) == []  # no SQLite file named after the URL


async def test_an_empty_database_path_is_refused_rather_than_a_throwaway_database(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(StartupError, match="empty"):
        await Store.open("  ")
    assert list(tmp_path.iterdir()) == []


async def test_plain_paths_that_merely_contain_a_colon_or_slashes_are_still_files(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for path in ("./postgresql:/x.db", "data:2026/jit.db", str(tmp_path / "jit.db")):
        async with await Store.open(path):
            pass
    assert (tmp_path / "postgresql:" / "x.db").exists() and (tmp_path / "data:2026" / "jit.db").exists()


HOLD_SCRIPT = textwrap.dedent(
    """
    import asyncio, sys
    from storage import Store

    async def main():
        store = await Store.open(sys.argv[1], exclusive=True)
        print("holding", flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)  # until the test says so
        await store.close()

    asyncio.run(main())
    """
)


def start_holder(path: Path) -> subprocess.Popen:
    """Another process that opens `path` for running the bot and keeps it open."""
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_SCRIPT, str(path)],
        cwd=REPO_ROOT,
        text=True,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    line = holder.stdout.readline()
    assert line.strip() == "holding", (line, holder.stderr.read() if holder.poll() is not None else "")
    return holder


async def test_a_second_process_cannot_run_on_a_database_another_process_runs_on(tmp_path):
    path = tmp_path / "jit.db"
    holder = start_holder(path)
    try:
        with pytest.raises(StartupError) as caught:
            await Store.open(path, exclusive=True)
        message = str(caught.value)
        assert f"pid {holder.pid} on {socket.gethostname()}, started 20" in message, message
        assert str(path) in message and "\n" not in message
        # Reading the audit trail or setting an override beside the running bot is fine.
        async with await Store.open(path) as reader:
            assert await reader.read(lambda db: db.execute("SELECT COUNT(*) FROM audit_events").fetchone()[0]) == 0
    finally:
        holder.kill()
        holder.wait()


async def test_a_holder_killed_with_sigkill_frees_the_database_for_the_next_bot(tmp_path):
    path = tmp_path / "jit.db"
    holder = start_holder(path)
    holder.send_signal(signal.SIGKILL)
    assert holder.wait(timeout=30) == -signal.SIGKILL
    async with await Store.open(path, exclusive=True) as store:
        assert not store.closed
    holder.stdout.close()
    holder.stderr.close()
    holder.stdin.close()


async def test_closing_the_store_releases_the_lock_and_a_second_open_in_one_process_is_refused(tmp_path):
    path = tmp_path / "jit.db"
    first = await Store.open(path, exclusive=True)
    with pytest.raises(StartupError, match=f"pid {os.getpid()} on "):
        await Store.open(path, exclusive=True)
    await first.close()
    assert Path(str(path) + ".lock").read_text() == ""  # emptied, never deleted
    async with await Store.open(path, exclusive=True):
        holder = json.loads(Path(str(path) + ".lock").read_text())
        assert holder["pid"] == os.getpid() and holder["host"] == socket.gethostname()


async def test_the_lock_is_found_through_a_symlink_or_a_relative_path(tmp_path, monkeypatch):
    real = tmp_path / "real" / "jit.db"
    real.parent.mkdir()
    (tmp_path / "link").symlink_to(real.parent)
    monkeypatch.chdir(tmp_path)
    async with await Store.open(real, exclusive=True):
        for other in ("link/jit.db", "real/../real/jit.db"):
            with pytest.raises(StartupError, match="already running"):
                await Store.open(other, exclusive=True)


async def test_an_in_memory_store_has_nothing_to_lock():
    async with await Store.open(":memory:", exclusive=True) as a, await Store.open(":memory:", exclusive=True) as b:
        assert not a.closed and not b.closed
