"""Every audit row a test's bot wrote, checked against docs/audit-event.schema.json and the hash chain.

`check_audit_trail(db_path)` is called when the e2e harness stops its bots (tests/e2e/harness.py)
and after the subprocess bots (tests/e2e/botprocess.py), so every event the end-to-end tests
produce is validated: a new kind of row that does not fit the documented schema fails the test
that wrote it, and so does a row of type `other` (an action nobody mapped to a documented type in
`core.audit_events.EVENT_TYPES`). In production the writer still records such a row as `other` and
never refuses it; here it is a defect to fix.
"""

from __future__ import annotations

import json
import sqlite3
from functools import cache
from pathlib import Path

from jsonschema import Draft202012Validator

from core.audit_events import OTHER, ChainChecker
from storage.audit_outbox import EVENT_COLUMNS, row_to_stored
from storage.db import is_postgres

SCHEMA_PATH = Path(__file__).resolve().parents[1] / "docs" / "audit-event.schema.json"


@cache
def validator() -> Draft202012Validator:
    """The validator of the documented schema (the schema itself checked first)."""
    schema = json.loads(SCHEMA_PATH.read_text())
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)


def _stored_rows(db_path: Path | str) -> list:
    """Every audit row of a SQLite file or a postgresql:// database, oldest first."""
    if is_postgres(db_path):
        import psycopg

        with psycopg.connect(str(db_path)) as pg:
            return pg.execute(f"SELECT {EVENT_COLUMNS} FROM audit_events ORDER BY id").fetchall()
    if not Path(db_path).exists():
        return []
    conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    try:
        return conn.execute(f"SELECT {EVENT_COLUMNS} FROM audit_events ORDER BY id").fetchall()
    finally:
        conn.close()


def check_audit_trail(db_path: Path | str) -> int:
    """Validate every audit event of the database at `db_path` (a SQLite file or a postgresql:// URL) and its
    chain; return how many; AssertionError if not."""
    rows = _stored_rows(db_path)
    checker = ChainChecker()
    for row in rows:
        event = row_to_stored(row)
        document = event.document()
        errors = sorted(validator().iter_errors(document), key=lambda e: list(e.path))
        assert event.type != OTHER, (
            f"audit event {event.seq} has the action {event.action!r}, which no documented type names: "
            "map it in core/audit_events.py EVENT_TYPES and list its type in docs/audit.md and the JSON Schema"
        )
        assert not errors, f"audit event {event.seq} ({event.action}) breaks the schema: " + "; ".join(
            f"{'/'.join(map(str, e.path)) or '(event)'}: {e.message}" for e in errors
        )
        problem = checker.feed(event)
        assert problem is None, f"audit chain broken at seq {problem.seq}: {problem.problem}"
    return len(rows)
