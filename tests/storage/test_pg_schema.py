"""PostgreSQL's schema is SQLite's: the two migration lists are kept equal here, table by table."""

from __future__ import annotations

import asyncio
import re
import sqlite3

import psycopg
import pytest

from core.errors import StartupError
from storage import AuditLog, Store
from storage.pg_migrations import PG_MIGRATIONS, applied_pg_migrations, apply_pg_migrations

from .conftest import event

_TYPES = {"TEXT": "text", "INTEGER": "integer", "BIGINT": "integer"}


def _norm_default(value: object) -> str | None:
    if value is None:
        return None
    text = str(value)
    text = re.sub(r"::[a-z ]+$", "", text)  # PostgreSQL writes '{}'::text
    return text.strip("()")


def sqlite_schema(db) -> dict:
    """Tables → columns (name, type family, NOT NULL, default, primary key), and indexes (name, unique, columns)."""
    tables = [
        r[0]
        for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        if not r[0].startswith(("sqlite_", "_sqlite"))
    ]
    schema: dict = {}
    for table in tables:
        columns = {
            name: (_TYPES[kind.upper()], bool(notnull) or bool(pk), _norm_default(default), pk > 0)
            for _, name, kind, notnull, default, pk in db.execute(f"PRAGMA table_info({table})")
        }
        listed = list(db.execute(f"PRAGMA index_list({table})"))
        indexes = {
            name: (bool(unique), tuple(c[2] for c in db.execute(f"PRAGMA index_info({name})")), bool(partial))
            for _, name, unique, origin, partial in listed
            if origin == "c"  # created by CREATE INDEX; primary keys are compared through the columns
        }
        uniques = {
            tuple(c[2] for c in db.execute(f"PRAGMA index_info({name})"))
            for _, name, unique, origin, partial in listed
            if origin == "u"  # a UNIQUE constraint in the CREATE TABLE
        }
        schema[table] = (columns, indexes, uniques)
    return schema


def pg_schema(conn: psycopg.Connection) -> dict:
    tables = [
        r[0]
        for r in conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public' AND tablename <> 'jitbot_migrations'"
        )
    ]
    schema: dict = {}
    for table in tables:
        pk = {
            r[0]
            for r in conn.execute(
                "SELECT a.attname FROM pg_index i JOIN pg_attribute a "
                "ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey) "
                "WHERE i.indrelid = %s::regclass AND i.indisprimary",
                [table],
            )
        }
        columns = {
            name: (_TYPES[kind.upper()], notnull == "NO", _norm_default(default), name in pk)
            for name, kind, notnull, default in conn.execute(
                "SELECT column_name, data_type, is_nullable, column_default FROM information_schema.columns "
                "WHERE table_name = %s",
                [table],
            )
        }
        indexes = {}
        for name, unique, definition, partial in conn.execute(
            "SELECT c.relname, i.indisunique, pg_get_indexdef(i.indexrelid), i.indpred IS NOT NULL FROM pg_index i "
            "JOIN pg_class c ON c.oid = i.indexrelid WHERE i.indrelid = %s::regclass AND NOT i.indisprimary "
            "AND NOT EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conindid = i.indexrelid)",
            [table],
        ):
            cols = re.search(r"\((.*?)\)", definition)
            indexes[name] = (unique, tuple(c.strip() for c in cols.group(1).split(",")) if cols else (), partial)
        uniques = {
            tuple(a.strip() for a in re.search(r"\((.*?)\)", definition).group(1).split(","))  # type: ignore[union-attr]
            for (definition,) in conn.execute(
                "SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE conrelid = %s::regclass AND contype = 'u'",
                [table],
            )
        }
        schema[table] = (columns, indexes, uniques)
    return schema


async def test_postgresql_and_sqlite_migrations_build_the_same_tables_columns_and_indexes(sqlite_store, postgres_dsn):
    expected = await sqlite_store.read(sqlite_schema)
    with psycopg.connect(postgres_dsn, autocommit=True) as conn:
        apply_pg_migrations(conn)
        actual = pg_schema(conn)
    assert sorted(actual) == sorted(expected)
    for table in expected:
        assert actual[table][0] == expected[table][0], f"columns of {table} differ"
        assert actual[table][1] == expected[table][1], f"indexes of {table} differ"
        assert actual[table][2] == expected[table][2], f"unique constraints of {table} differ"


async def test_postgresql_migrations_apply_once_even_when_replicas_start_together(postgres_dsn):
    stores = await asyncio.gather(*(Store.open(postgres_dsn) for _ in range(3)))
    try:
        with psycopg.connect(postgres_dsn) as conn:
            assert applied_pg_migrations(conn) == [name for name, _ in PG_MIGRATIONS]
            assert apply_pg_migrations(conn) == []
    finally:
        for store in stores:
            await store.close()


async def test_a_postgresql_database_from_a_newer_jitbot_is_refused(postgres_dsn):
    async with await Store.open(postgres_dsn):
        pass
    with psycopg.connect(postgres_dsn, autocommit=True) as conn:
        conn.execute("INSERT INTO jitbot_migrations VALUES ('m999_future', 999, 'x')")
    with pytest.raises(StartupError, match="newer jitbot.*m999_future"):
        await Store.open(postgres_dsn)


async def test_postgresql_refuses_truncate_update_and_delete_of_the_audit_trail_from_any_connection(postgres_dsn):
    async with await Store.open(postgres_dsn) as store:
        await AuditLog(store).append(event())
    with psycopg.connect(postgres_dsn, autocommit=True) as conn:
        for statement in ("UPDATE audit_events SET actor = 'x'", "DELETE FROM audit_events", "TRUNCATE audit_events"):
            with pytest.raises(psycopg.errors.RaiseException, match="append-only"):
                conn.execute(statement)
        assert conn.execute("SELECT count(*) FROM audit_events").fetchone() == (1,)


async def test_postgresql_query_plans_can_use_the_status_indexes(postgres_dsn):
    async with await Store.open(postgres_dsn):
        pass
    with psycopg.connect(postgres_dsn) as conn:
        conn.execute("SET enable_seqscan = off")
        due = " ".join(
            r[0] for r in conn.execute("EXPLAIN SELECT id FROM requests WHERE status = 'granted' AND expires_at <= 'x'")
        )
        timed_out = " ".join(
            r[0] for r in conn.execute("EXPLAIN SELECT id FROM requests WHERE status = 'pending' AND timeout_at <= 'x'")
        )
    # An empty table gives the planner no reason to prefer one (status, …) index over the other.
    assert re.search(r"Index (Only )?Scan using requests_status_", due)
    assert re.search(r"Index (Only )?Scan using requests_status_", timed_out)


def test_the_dbapi_errors_are_sqlites_on_both_engines():
    from storage.pg_database import as_dbapi_error

    refused = as_dbapi_error(psycopg.errors.UniqueViolation("duplicate key value"))
    broken = as_dbapi_error(psycopg.OperationalError("server closed the connection"))
    assert isinstance(refused, sqlite3.IntegrityError) and isinstance(broken, sqlite3.OperationalError)
