"""The hash chain, as a property: any one change to any stored row is found, at that row.

Events of every kind are written by the real writer into a real SQLite database; then one row is
edited (any column the document is built from, to any other value), deleted, or a row is forged in
the middle. `ChainChecker` (what `bot.py audit verify` runs) must report the first event whose
content or link no longer holds: the edited row itself, or the row after a deleted or forged one.
"""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import sqlite_utils
from hypothesis import given, settings
from hypothesis import strategies as st

from core.audit_events import ChainChecker
from core.models import AuditEvent
from core.secrets import SecretRegistry
from storage.audit import AuditWriter
from storage.audit_outbox import EVENT_COLUMNS, row_to_stored
from storage.migrations import apply_migrations

T0 = datetime(2026, 11, 21, tzinfo=UTC)
ACTIONS = ["request.created", "request.approved", "access.granted", "access.revoked", "click.refused", "x.unmapped"]
EDITABLE = ["at", "actor", "action", "request_id", "detail", "event_id", "type", "via", "flow", "reason", "fields"]

texts = st.text(min_size=1, max_size=12)
events = st.lists(
    st.builds(
        lambda n, action, actor, reason: AuditEvent(
            at=T0 + timedelta(seconds=n),
            actor=actor,
            action=action,
            request_id=f"r{n % 3}",
            detail={"reason": reason, "n": n, "fields": {"reason": reason}},
            flow="db_access",
            target="prod_admin",
        ),
        st.integers(0, 10_000),
        st.sampled_from(ACTIONS),
        st.sampled_from(["U0ALICE", "system", "hook:hooks.py:on_request", "api:ci"]),
        texts,
    ),
    min_size=2,
    max_size=12,
)


def written(batch: list[AuditEvent]) -> sqlite_utils.Database:
    db = sqlite_utils.Database(memory=True)
    db.conn.isolation_level = None
    apply_migrations(db)
    writer = AuditWriter(SecretRegistry())
    for event in batch:
        writer.insert(db, event)
    for trigger in ("audit_events_no_update", "audit_events_no_delete", "audit_events_no_replace"):
        db.execute(f"DROP TRIGGER {trigger}")  # what someone with the file and a sqlite3 shell can do
    return db


def first_break(db: sqlite_utils.Database) -> int | None:
    checker = ChainChecker()
    for row in db.execute(f"SELECT {EVENT_COLUMNS} FROM audit_events ORDER BY id"):
        problem = checker.feed(row_to_stored(row))
        if problem is not None:
            return problem.seq
    return None


@settings(max_examples=60, deadline=None)  # each example builds a database: slow on a loaded machine
@given(events)
def test_an_untouched_trail_verifies(batch):
    assert first_break(written(batch)) is None


@settings(max_examples=120, deadline=None)  # each example builds a database: slow on a loaded machine
@given(events, st.data())
def test_any_edit_of_any_row_is_found_at_that_row(batch, data):
    db = written(batch)
    seq = data.draw(st.integers(1, len(batch)), label="row")
    column = data.draw(st.sampled_from(EDITABLE), label="column")
    before = db.execute(f"SELECT {column} FROM audit_events WHERE id = ?", [seq]).fetchone()[0]
    replacement = data.draw(
        st.just('{"reason": "nothing to see"}') if column in ("detail", "fields") else texts, label="value"
    )
    if replacement == before:
        replacement = (before or "") + "!"
    db.execute(f"UPDATE audit_events SET {column} = ? WHERE id = ?", [replacement, seq])
    assert first_break(db) == seq


@settings(max_examples=60, deadline=None)  # each example builds a database: slow on a loaded machine
@given(events, st.data())
def test_a_deleted_row_is_found_at_the_row_after_it_and_a_forged_copy_at_itself(batch, data):
    db = written(batch)
    seq = data.draw(st.integers(1, len(batch) - 1), label="row")
    if data.draw(st.booleans(), label="forge instead of delete"):
        # A forged row copies a genuine one's columns, hash included, under a new id after it.
        db.execute(
            "INSERT INTO audit_events (id, at, request_id, actor, action, status_from, status_to, detail, event_id, "
            "type, via, flow, target, actor_email, actor_name, reason, fields, prev_hash, hash) "
            "SELECT id + 100000, at, request_id, actor, 'request.approved', status_from, status_to, detail, "
            "event_id || 'x', type, via, flow, target, actor_email, actor_name, reason, fields, prev_hash, hash "
            "FROM audit_events WHERE id = ?",
            [seq],
        )
        assert first_break(db) == seq + 100000
    else:
        db.execute("DELETE FROM audit_events WHERE id = ?", [seq])
        assert first_break(db) == seq + 1


_COLUMNS = [c.strip() for c in EVENT_COLUMNS.split(",")]


@settings(max_examples=60, deadline=None)  # each example builds a database: slow on a loaded machine
@given(events, st.data())
def test_any_other_column_edited_including_the_chain_links_is_found_at_that_row(batch, data):
    db = written(batch)
    seq = data.draw(st.integers(1, len(batch)), label="row")
    column = data.draw(
        st.sampled_from(["target", "status_from", "status_to", "actor_email", "actor_name", "prev_hash", "hash"]),
        label="column",
    )
    before = db.execute(f"SELECT {column} FROM audit_events WHERE id = ?", [seq]).fetchone()[0]
    db.execute(f"UPDATE audit_events SET {column} = ? WHERE id = ?", [(before or "") + "0", seq])
    assert first_break(db) == seq


@settings(max_examples=60, deadline=None)  # each example builds a database: slow on a loaded machine
@given(events, st.data())
def test_two_rows_whose_seq_were_swapped_are_found_at_the_first_of_them(batch, data):
    db = written(batch)
    a = data.draw(st.integers(1, len(batch) - 1), label="row")
    b = data.draw(st.integers(a + 1, len(batch)), label="other row")
    db.execute("UPDATE audit_events SET id = -1 WHERE id = ?", [a])
    db.execute("UPDATE audit_events SET id = ? WHERE id = ?", [a, b])
    db.execute("UPDATE audit_events SET id = ? WHERE id = -1", [b])
    assert first_break(db) == a


@settings(max_examples=60, deadline=None)  # each example builds a database: slow on a loaded machine
@given(events, st.data())
def test_a_row_relinked_to_another_prev_hash_with_its_own_hash_recomputed_is_found_at_that_row(batch, data):
    # The forger rewrites one row so that its hash matches its (swapped) prev_hash: the link still breaks.
    db = written(batch)
    seq = data.draw(st.integers(2, len(batch)), label="row")
    other = data.draw(st.sampled_from([s for s in range(1, len(batch) + 1) if s != seq - 1]), label="linked to")
    other_hash = db.execute("SELECT hash FROM audit_events WHERE id = ?", [other]).fetchone()[0]
    event = row_to_stored(db.execute(f"SELECT {EVENT_COLUMNS} FROM audit_events WHERE id = ?", [seq]).fetchone())
    forged = replace(event, prev_hash=other_hash)
    db.execute(
        "UPDATE audit_events SET prev_hash = ?, hash = ? WHERE id = ?", [other_hash, forged.computed_hash(), seq]
    )
    assert first_break(db) == seq


@settings(max_examples=60, deadline=None)  # each example builds a database: slow on a loaded machine
@given(events, st.data())
def test_a_row_inserted_in_the_middle_with_a_correct_hash_of_its_own_is_found_at_the_row_after_it(batch, data):
    # Someone with the file renumbers the rows after k and inserts a well-formed event at k + 1, chained
    # to row k: it verifies by itself, so the break is where the genuine chain resumes, at k + 2.
    db = written(batch)
    k = data.draw(st.integers(1, len(batch) - 1), label="after row")
    db.execute("UPDATE audit_events SET id = id + 1000000 WHERE id > ?", [k])
    db.execute("UPDATE audit_events SET id = id - 1000000 + 1 WHERE id > 1000000")
    previous = row_to_stored(db.execute(f"SELECT {EVENT_COLUMNS} FROM audit_events WHERE id = ?", [k]).fetchone())
    inserted = replace(previous, seq=k + 1, event_id=previous.event_id + "-forged", prev_hash=previous.hash)
    inserted = replace(inserted, hash=inserted.computed_hash())
    row = [getattr(inserted, "seq" if c == "id" else c) for c in _COLUMNS]
    values = [json.dumps(v) if isinstance(v, dict) else v for v in row]
    db.execute(f"INSERT INTO audit_events ({EVENT_COLUMNS}) VALUES ({', '.join('?' * len(values))})", values)
    assert first_break(db) == k + 2


@settings(max_examples=60, deadline=None)  # each example builds a database: slow on a loaded machine
@given(events, st.data())
def test_a_value_of_the_wrong_type_in_any_column_is_found_at_that_row_never_a_crash(batch, data):
    # SQLite keeps whatever type is written: a blob or a number where the writer put text.
    db = written(batch)
    seq = data.draw(st.integers(1, len(batch)), label="row")
    column = data.draw(st.sampled_from([*EDITABLE, "target", "actor_email", "prev_hash", "hash"]), label="column")
    value = data.draw(st.sampled_from([b"\x00\xff", b"A", 7, 2.5]), label="value")
    db.execute(f"UPDATE audit_events SET {column} = ? WHERE id = ?", [value, seq])
    assert first_break(db) == seq
