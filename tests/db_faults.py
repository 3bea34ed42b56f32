"""Real database errors for chosen writes, injected from a second connection, on either engine.

A trigger that raises makes the bot's own write fail exactly as a database outage would (the same
DB-API error class on both engines: storage/postgres.py maps PostgreSQL's to SQLite's), without
touching the bot's code:

    fail_updates(bot.db_path, "test_fail_grant", column="status", when="NEW.status = 'granted'")
    ...
    heal(bot.db_path, "test_fail_grant")
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from storage.db import is_postgres


def fail_updates(db_path: Path | str, name: str, *, column: str, when: str | None = None) -> None:
    """Make every UPDATE of `column` on requests (where `when` holds) fail with 'disk I/O error'."""
    if is_postgres(db_path):
        import psycopg

        condition = f"WHEN ({when}) " if when else ""
        with psycopg.connect(str(db_path), autocommit=True) as pg:
            pg.execute(
                f"CREATE OR REPLACE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS "
                "$$ BEGIN RAISE EXCEPTION 'disk I/O error'; END $$"
            )
            pg.execute(
                f"CREATE OR REPLACE TRIGGER {name} BEFORE UPDATE OF {column} ON requests "
                f"FOR EACH ROW {condition}EXECUTE FUNCTION {name}()"
            )
        return
    condition = f"WHEN {when} " if when else ""
    with sqlite3.connect(db_path) as db:
        db.execute(
            f"CREATE TRIGGER IF NOT EXISTS {name} BEFORE UPDATE OF {column} ON requests "
            f"{condition}BEGIN SELECT RAISE(ABORT, 'disk I/O error'); END"
        )


def heal(db_path: Path | str, name: str) -> None:
    """Drop the fault `fail_updates` injected."""
    if is_postgres(db_path):
        import psycopg

        with psycopg.connect(str(db_path), autocommit=True) as pg:
            pg.execute(f"DROP TRIGGER IF EXISTS {name} ON requests")
            pg.execute(f"DROP FUNCTION IF EXISTS {name}()")
        return
    with sqlite3.connect(db_path) as db:
        db.execute(f"DROP TRIGGER IF EXISTS {name}")


def stored_text(db_path: Path | str) -> bytes:
    """Everything the database holds, as bytes to search: the SQLite file and its WAL, or every row of every
    PostgreSQL table as JSON text."""
    if is_postgres(db_path):
        import psycopg

        with psycopg.connect(str(db_path)) as pg:
            tables = [
                t
                for (t,) in pg.execute(
                    "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"
                ).fetchall()
            ]
            rows = [r for t in tables for (r,) in pg.execute(f'SELECT row_to_json(t)::text FROM "{t}" t').fetchall()]
        return "\n".join(rows).encode()
    path = Path(db_path)
    files = [path, path.with_name(path.name + "-wal")]
    return b"".join(f.read_bytes() for f in files if f.exists())


def run_sql(db_path: Path | str, *statements: str) -> None:
    """Run statements from a connection of the test's own (what someone with a database shell could do)."""
    if is_postgres(db_path):
        import psycopg

        with psycopg.connect(str(db_path), autocommit=True) as pg:
            for statement in statements:
                pg.execute(statement)
        return
    with sqlite3.connect(db_path) as db:
        for statement in statements:
            db.execute(statement)


def lift_audit_triggers(db_path: Path | str) -> None:
    """Drop the triggers that keep audit_events append-only, as an attacker with a database shell would."""
    if is_postgres(db_path):
        run_sql(db_path, "DROP TRIGGER audit_events_no_change ON audit_events")
    else:
        run_sql(db_path, "DROP TRIGGER audit_events_no_update", "DROP TRIGGER audit_events_no_delete")
