from __future__ import annotations

import sqlite3

import pytest

from storage import AuditLog, RequestRepo, Store
from storage.migrations import KNOWN_MIGRATIONS, applied_migrations, apply_migrations

from .conftest import event, make_request


def _schema(db):
    return sorted(
        (row[0], row[1]) for row in db.execute("SELECT type, name FROM sqlite_master WHERE name NOT LIKE 'sqlite_%'")
    )


async def test_fresh_database_gets_every_migration_in_order(sqlite_store):
    store = sqlite_store
    assert await store.read(applied_migrations) == KNOWN_MIGRATIONS
    assert KNOWN_MIGRATIONS == sorted(KNOWN_MIGRATIONS)
    schema = await store.read(_schema)
    for expected in [
        ("table", "requests"),
        ("table", "audit_events"),
        ("table", "identity_overrides"),
        ("trigger", "audit_events_no_update"),
        ("trigger", "audit_events_no_delete"),
        ("trigger", "audit_events_no_replace"),
        ("index", "requests_status_expires"),
        ("index", "requests_status_timeout"),
    ]:
        assert expected in schema


async def test_reopening_a_file_database_is_idempotent_and_keeps_data(tmp_path):
    path = tmp_path / "jit.db"
    async with await Store.open(path) as store:
        await RequestRepo(store).create(make_request("r1"), event())
        first_schema = await store.read(_schema)
        first_applied = await store.read(
            lambda db: db.execute("SELECT name, applied_at FROM _sqlite_migrations").fetchall()
        )

    for _ in range(2):
        async with await Store.open(path) as store:
            assert await store.read(_schema) == first_schema
            assert (
                await store.read(lambda db: db.execute("SELECT name, applied_at FROM _sqlite_migrations").fetchall())
                == first_applied
            )
            assert (await RequestRepo(store).get("r1")).id == "r1"
            assert await store.write(apply_migrations) == []


def _plan(db, sql):
    return " ".join(str(row[-1]) for row in db.execute(f"EXPLAIN QUERY PLAN {sql}"))


async def test_query_plans_use_the_status_indexes(sqlite_store):
    store = sqlite_store
    due = await store.read(
        lambda db: _plan(db, "SELECT id FROM requests WHERE status = 'granted' AND expires_at <= 'x'")
    )
    timed_out = await store.read(
        lambda db: _plan(db, "SELECT id FROM requests WHERE status = 'pending' AND timeout_at <= 'x'")
    )
    assert "requests_status_expires" in due
    assert "requests_status_timeout" in timed_out


async def test_a_database_from_before_the_replace_guard_gets_it_on_the_next_start(tmp_path):
    path = tmp_path / "jit.db"
    async with await Store.open(path) as store:
        row_id = await AuditLog(store).append(event())
    # The file as an older jitbot left it: no m004, no trigger.
    with sqlite3.connect(path) as conn:
        conn.execute("DROP TRIGGER audit_events_no_replace")
        conn.execute("DELETE FROM _sqlite_migrations WHERE name = 'm004_audit_events_no_replace'")
    async with await Store.open(path):
        pass
    with sqlite3.connect(path) as conn, pytest.raises(sqlite3.IntegrityError, match="append-only"):
        conn.execute("REPLACE INTO audit_events (id, at, actor, action) VALUES (?, 'x', 'mallory', 'x')", [row_id])
