"""The audit trail as documented events: derived fields, the hash chain, the migration that chains old rows."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
import sqlite_utils

from audit_cli import verify
from core.audit_events import GENESIS_HASH, TYPES, ChainChecker, event_type
from core.models import AuditEvent
from storage import AuditLog, RequestRepo, Store
from storage.audit_outbox import AuditReader
from storage.migrations import MIGRATIONS
from tests.audit_schema_check import check_audit_trail
from tests.e2e.botprocess import REPO, clean_env

from .conftest import T0, event, make_request


async def documents(store: Store) -> list[dict]:
    docs: list[dict] = []
    async for page in AuditReader(store).pages():
        docs.extend(e.document() for e in page)
    return docs


async def test_each_row_names_its_flow_target_actor_and_reason_and_is_chained_to_the_last(store):
    repo = RequestRepo(store)
    await repo.create(
        make_request("r1"), event(actor="U0REQ", action="request.created", detail={"fields": {"reason": "incident 42"}})
    )
    await AuditLog(store).append(
        AuditEvent(at=T0, actor="hook:hooks.py:on_request", action="hook.verdict", request_id="r1", reason="on call")
    )
    created, verdict = await documents(store)
    assert (created["seq"], created["type"], created["via"], created["flow"], created["target"]) == (
        1,
        "request.created",
        "slack",
        "db_access",
        "prod_admin",
    )
    assert created["actor"] == {"id": "U0REQ", "slack_id": "U0REQ", "email": "req@example.com", "name": None}
    assert created["reason"] == "incident 42" and created["fields"]["reason"] == "incident 42"
    assert created["prev_hash"] == GENESIS_HASH and verdict["prev_hash"] == created["hash"]
    assert (verdict["via"], verdict["reason"], verdict["flow"]) == ("hook", "on call", "db_access")
    assert created["event_id"] < verdict["event_id"]  # time-ordered ids
    check_audit_trail(store.path)


async def test_an_action_nobody_mapped_is_written_as_type_other_never_refused(audit_log, store):
    await audit_log.append(AuditEvent(at=T0, actor="api:ci-bot", action="access.teleported", detail={"where": "moon"}))
    (doc,) = await documents(store)
    assert (doc["type"], doc["action"], doc["via"]) == ("other", "access.teleported", "api")
    assert event_type("access.teleported") == "other" and "other" in TYPES


async def test_an_explicit_via_wins_over_the_actor_form(audit_log, store):
    await audit_log.append(AuditEvent(at=T0, actor="U0ALICE", action="request.cancelled", via="api"))
    await audit_log.append(AuditEvent(at=T0, actor="U0ALICE", action="extend", detail={"via": "api"}))
    first, second = await documents(store)
    assert (first["type"], first["via"]) == ("request.cancelled", "api")
    assert (second["type"], second["via"]) == ("access.extended", "api")


async def test_a_bulk_insert_is_chained_row_after_row(store):
    await RequestRepo(store).create_many([(make_request(f"r{n}"), event()) for n in range(50)])
    checker = ChainChecker()
    async for page in AuditReader(store).pages(page=7):
        assert all(checker.feed(e) is None for e in page)
    assert checker.count == 50


async def test_rows_written_before_the_chain_existed_are_chained_by_the_migration(tmp_path):
    path = tmp_path / "old.db"
    db = sqlite_utils.Database(path)
    MIGRATIONS.apply(db, stop_before="m010_audit_event_chain")
    db.conn.execute(
        "INSERT INTO requests (id, flow, target, requester, requester_email, status, created_at, duration_seconds) "
        "VALUES ('r1', 'db_access', 'prod_admin', 'U0REQ', 'req@example.com', 'pending', 'x', 60)"
    )
    for n, action in enumerate(("request.created", "request.approved", "identity.set")):
        db.conn.execute(
            "INSERT INTO audit_events (at, request_id, actor, action, detail) VALUES (?, ?, ?, ?, ?)",
            [f"2025-01-0{n + 1}T00:00:00.000000Z", "r1" if n < 2 else None, "U0REQ", action, '{"reason": "old"}'],
        )
    db.conn.commit()
    db.close()

    async with await Store.open(path) as store:  # applies m010 and m011
        docs = await documents(store)
        assert [d["type"] for d in docs] == ["request.created", "request.approved", "identity.set"]
        assert docs[0]["flow"] == "db_access" and docs[0]["actor"]["email"] == "req@example.com"
        assert docs[0]["event_id"] < docs[1]["event_id"] < docs[2]["event_id"]
        assert (await verify(store, [])).problem is None
        await AuditLog(store).append(event())  # new rows continue the migrated chain
        assert (await verify(store, [])).problem is None
    check_audit_trail(path)
    with sqlite3.connect(path) as conn, pytest.raises(sqlite3.IntegrityError, match="append-only"):
        conn.execute("UPDATE audit_events SET actor = 'mallory'")  # the trigger is back


_PEAK_RSS = """
import sys
sys.path.insert(0, sys.argv[1])
import bot
code = bot.main(sys.argv[2:])
hwm = [l for l in open("/proc/self/status") if l.startswith("VmHWM:")][0].split()[1]
print(hwm, file=sys.stderr)
sys.exit(code)
"""


def export_peak_kb(db: Path, *args: str) -> int:
    """Run `bot.py audit export ARGS --output /dev/null` in a fresh process; its peak resident memory in KB."""
    env = {**clean_env(JITBOT_DB=str(db))}
    result = subprocess.run(
        [sys.executable, "-c", _PEAK_RSS, str(REPO), "audit", "export", *args, "--output", os.devnull],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    return int(result.stderr.strip().splitlines()[-1])


@pytest.mark.slow
async def test_exporting_100000_events_streams_in_bounded_memory(tmp_path):
    path = tmp_path / "big.db"
    async with await Store.open(path) as store:
        detail = {"reason": "routine maintenance " * 10, "fields": {"ticket": "OPS-1234", "duration": "1h"}}
        writer = AuditLog(store)._writer
        for start in range(0, 100_000, 20_000):
            chunk = [
                AuditEvent(
                    at=T0 + timedelta(seconds=n),
                    actor="U0REQ",
                    action="request.created",
                    request_id=f"r{n}",
                    detail=detail,
                )
                for n in range(start, start + 20_000)
            ]
            await store.write(lambda db, c=chunk: writer.insert_many(db, c))
        checked = await verify(store, [])
        assert checked.problem is None and checked.checked == 100_000

    # The same command exporting nothing is the baseline (interpreter, imports, SQLite's page cache).
    baseline = export_peak_kb(path, "--since", "2100-01-01", "--until", "2100-01-02")
    for fmt in ("jsonl", "csv"):
        peak = export_peak_kb(path, "--since", "2026-01-01", "--until", "2027-01-01", "--format", fmt)
        # ~70 MB of events go through; holding them all would take several hundred MB.
        assert peak - baseline < 40_000, f"{fmt} export peaked {(peak - baseline) / 1000:.0f} MB above the baseline"


async def test_an_audit_row_with_values_json_canonical_form_cannot_hold_is_still_written_and_verifies(audit_log, store):
    await audit_log.append(
        AuditEvent(at=T0, actor="U0A", action="access.granted", detail={"big": 2**64, "nan": float("nan"), "f": 0.1})
    )
    (doc,) = await documents(store)
    assert doc["detail"] == {"big": str(2**64), "nan": "nan", "f": 0.1}
    assert (await verify(store, [])).problem is None


@pytest.mark.parametrize("line_break", ["\r", "\n", "\r\n"])
async def test_a_line_break_in_a_reason_cannot_smuggle_a_formula_row_into_the_csv_export(audit_log, store, line_break):
    import csv
    import io

    from audit_cli import CSV_COLUMNS, export
    from storage.audit_outbox import ExportFilter

    reason = f"fine{line_break}=cmd|' /C calc'!A0"  # no quote or comma of its own, so nothing forces quoting
    await audit_log.append(AuditEvent(at=T0, actor="U0ALICE", action="request.denied", reason=reason))
    out = io.StringIO()
    assert await export(store, ExportFilter(), "csv", out) == 1
    rows = list(csv.reader(io.StringIO(out.getvalue(), newline="")))
    assert len(rows) == 2 and len(rows[1]) == len(CSV_COLUMNS)  # one event, one row
    assert rows[1][CSV_COLUMNS.index("reason")] == reason
    assert not any(cell.startswith(("=", "+", "-", "@")) for row in rows for cell in row)
