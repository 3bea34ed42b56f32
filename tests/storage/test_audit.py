from __future__ import annotations

import sqlite3
from datetime import timedelta
from types import MappingProxyType

import pytest
import sqlite_utils

from core.models import AuditEvent, RequestStatus
from core.secrets import Secret
from storage import AuditLog, Store

from .conftest import T0, event


async def test_events_round_trip(audit_log):
    original = AuditEvent(
        at=T0 + timedelta(microseconds=42),
        actor="U0A",
        action="request.approved",
        request_id="r1",
        status_from="pending",
        status_to="approved",
        detail={"reason": "on call", "fields": {"duration": "1h"}, "approvers": ["U0A", "U0B"], "n": 2},
    )
    await audit_log.append(original)
    assert await audit_log.for_request("r1") == [original]


async def test_detail_values_are_made_json_safe(audit_log):
    await audit_log.append(
        event(
            request_id="r1",
            status_from=RequestStatus.PENDING,
            detail=MappingProxyType({"when": T0, "status": RequestStatus.GRANTED, "ids": ("a", "b"), "set": {1}}),
        )
    )
    (stored,) = await audit_log.for_request("r1")
    assert stored.status_from == "pending"
    assert stored.detail == {"when": "2026-11-21T15:00:00.000000Z", "status": "granted", "ids": ["a", "b"], "set": [1]}


async def test_registered_secrets_never_reach_an_audit_row(audit_log, store, secrets):
    secrets.register("hunter2-webhook-secret")
    wrapped = Secret("okta-token-00112233")
    secrets.register(wrapped.reveal())  # as the loader does for every Secret it builds

    class Leaky:
        def __str__(self):
            return "client(token=okta-token-00112233)"

    await audit_log.append(
        event(
            request_id="r1",
            detail={
                "error": "HMAC with hunter2-webhook-secret failed",
                "nested": [{"header": "SSWS okta-token-00112233"}],
                "wrapped": wrapped,
                "object": Leaky(),
                "hunter2-webhook-secret": "as a key",
            },
        )
    )
    (stored,) = await audit_log.for_request("r1")
    assert stored.detail == {
        "error": "HMAC with *** failed",
        "nested": [{"header": "SSWS ***"}],
        "wrapped": "***",
        "object": "client(token=***)",
        "***": "as a key",
    }
    raw = await store.read(lambda db: db.execute("SELECT detail FROM audit_events").fetchone()[0])
    assert "hunter2" not in raw and "00112233" not in raw


async def test_update_and_delete_are_rejected_by_triggers(audit_log, store):
    await audit_log.append(event(request_id="r1", detail={"reason": "original"}))
    for sql in ("UPDATE audit_events SET actor = 'mallory'", "DELETE FROM audit_events"):
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            await store.write(lambda db, sql=sql: db.execute(sql))
    (stored,) = await audit_log.for_request("r1")
    assert stored.actor == "U0REQ" and stored.detail == {"reason": "original"}


async def test_a_rejected_audit_change_rolls_back_the_whole_transaction(audit_log, store):
    await audit_log.append(event(request_id="r1"))

    def sneaky(db):
        db.execute("INSERT INTO audit_events (at, actor, action) VALUES ('x', 'mallory', 'cover-up')")
        db.execute("DELETE FROM audit_events WHERE actor = 'U0REQ'")

    with pytest.raises(sqlite3.IntegrityError):
        await store.write(sneaky)
    assert [e.actor for e in await audit_log.list()] == ["U0REQ"]


async def test_list_filters_by_time_and_limits(audit_log):
    for minute in range(5):
        await audit_log.append(event(f"a{minute}", at=T0 + timedelta(minutes=minute), request_id=None))
    assert [e.action for e in await audit_log.list()] == ["a0", "a1", "a2", "a3", "a4"]
    assert [e.action for e in await audit_log.list(since=T0 + timedelta(minutes=2))] == ["a2", "a3", "a4"]
    assert [e.action for e in await audit_log.list(since=T0 + timedelta(minutes=1), limit=2)] == ["a1", "a2"]
    with pytest.raises(ValueError):
        await audit_log.list(limit=0)


async def test_append_returns_increasing_ids(audit_log):
    first = await audit_log.append(event())
    second = await audit_log.append(event())
    assert second > first


TAMPERING = {
    "insert or replace": "INSERT OR REPLACE INTO audit_events (id, at, actor, action, detail) "
    "VALUES ({id}, 'x', 'mallory', 'cover-up', '{{}}')",
    "replace into": (
        "REPLACE INTO audit_events (id, at, actor, action, detail) VALUES ({id}, 'x', 'mallory', 'cover-up', '{{}}')"
    ),
    "replace by rowid": (
        "INSERT OR REPLACE INTO audit_events (rowid, at, actor, action) VALUES ({id}, 'x', 'mallory', 'cover-up')"
    ),
    "upsert": "INSERT INTO audit_events (id, at, actor, action) VALUES ({id}, 'x', 'mallory', 'cover-up') "
    "ON CONFLICT (id) DO UPDATE SET actor = excluded.actor, action = excluded.action",
    "update": "UPDATE audit_events SET actor = 'mallory' WHERE id = {id}",
    "update or replace": "UPDATE OR REPLACE audit_events SET id = {id} + 1000 WHERE id = {id}",
    "delete": "DELETE FROM audit_events WHERE id = {id}",
}


@pytest.mark.parametrize("recursive_triggers", ["OFF", "ON"])
@pytest.mark.parametrize("how", list(TAMPERING))
async def test_raw_sql_on_the_database_file_cannot_rewrite_or_remove_an_audit_row(tmp_path, how, recursive_triggers):
    path = tmp_path / "jit.db"
    async with await Store.open(path) as store:
        row_id = await AuditLog(store).append(event(request_id="r1", detail={"reason": "original"}))
    before = _rows(path)

    # A maintenance shell: its own connection, no jitbot code in between, whatever its pragmas.
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA recursive_triggers = {recursive_triggers}")
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        conn.execute(TAMPERING[how].format(id=row_id))
    conn.commit()
    conn.close()
    assert _rows(path) == before


async def test_sqlite_utils_upsert_and_replace_cannot_rewrite_an_audit_row(tmp_path):
    path = tmp_path / "jit.db"
    async with await Store.open(path) as store:
        row_id = await AuditLog(store).append(event(request_id="r1"))
    before = _rows(path)
    db = sqlite_utils.Database(path)
    forged = {"id": row_id, "at": "x", "actor": "mallory", "action": "cover-up", "detail": "{}"}
    for write in (
        lambda: db["audit_events"].insert(forged, replace=True),
        lambda: db["audit_events"].upsert(forged, pk="id"),
    ):
        with pytest.raises(sqlite3.DatabaseError, match="append-only"):
            write()
    db.close()
    assert _rows(path) == before


async def test_appending_still_works_after_a_refused_replace(tmp_path):
    path = tmp_path / "jit.db"
    async with await Store.open(path) as store:
        log = AuditLog(store)
        first = await log.append(event(request_id="r1"))
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            await store.write(lambda db: db.execute(TAMPERING["insert or replace"].format(id=first)))
        second = await log.append(event(request_id="r1", action="request.approved"))
        assert second > first
        assert [e.action for e in await log.for_request("r1")] == ["request.created", "request.approved"]


def _rows(path) -> list[tuple]:
    with sqlite3.connect(path) as conn:
        return conn.execute("SELECT * FROM audit_events ORDER BY id").fetchall()
