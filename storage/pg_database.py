"""What a repository function gets on PostgreSQL: `PgDatabase`, the repositories' SQL in PostgreSQL's dialect.

The repositories write their SQL once, for SQLite's sqlite3 handle (`db.execute`, `db.conn.execute`,
`executemany`, `?` and `:name` placeholders, `group_concat`, two-argument `MAX`, `COLLATE BINARY`).
`PgDatabase` wraps one psycopg 3 connection in that shape: `translate` rewrites each statement,
`PgCursor` reads results like a sqlite3 cursor (sending a pipeline's queued statements at the first
look), `stream` is a server-side cursor, `lock_writes` takes the store-wide advisory lock
(`WRITE_LOCK`), and `as_dbapi_error` raises the driver's errors as the sqlite3 DB-API classes the
callers already catch. It is apart from `storage.postgres` because it is the dialect adapter, one
transaction's handle, while `PgStore` owns the pool, the threads, the transactions and their
retries; the tests use the translation on their own.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterable, Iterator, Mapping, Sequence
from functools import lru_cache
from typing import Any

import psycopg

# Advisory lock keys: a constant per purpose, so another application on the same server is unlikely
# to collide (they are 64-bit; these spell "jitbot" and a purpose).
WRITE_LOCK = 0x6A69_7462_6F74_0001  # held by serialised writes, and by any transaction writing an audit row

_SQL_TOKEN = re.compile(
    r"'(?:[^']|'')*'|\?|%|::|(?<![:\w]):([A-Za-z_]\w*)|group_concat\(\s*([A-Za-z_][\w.]*)\s*\)"
    r"|\bMAX\(\s*([^(),']+?)\s*,\s*([^(),']+?)\s*\)|\bCOLLATE\s+BINARY\b",
    re.IGNORECASE,
)


@lru_cache(maxsize=1024)
def translate(sql: str) -> str:
    """The repositories' SQL in PostgreSQL's dialect: `?` → `%s`, `:name` → `%(name)s`, a literal `%`
    doubled, `group_concat(x)` → `string_agg(x::text, ',')`, SQLite's two-argument `MAX(a, b)` →
    `GREATEST(a, b)`, `COLLATE BINARY` (SQLite's byte order, whatever the server's locale) → `COLLATE "C"`;
    quoted strings and `::` casts are left as written."""

    def replace(match: re.Match[str]) -> str:
        token = match.group(0)
        if token == "?":
            return "%s"
        if token == "%":
            return "%%"
        if match.group(1):
            return f"%({match.group(1)})s"
        if match.group(2):
            return f"string_agg(CAST({match.group(2)} AS TEXT), ',')"
        if match.group(3):
            return f"GREATEST({translate(match.group(3))}, {translate(match.group(4))})"
        if token[:1].upper() == "C":
            return 'COLLATE "C"'
        return token  # a quoted string, or a cast

    return _SQL_TOKEN.sub(replace, sql)


def as_dbapi_error(error: psycopg.Error) -> sqlite3.DatabaseError:
    """The driver's error as the DB-API class the repositories and their callers already catch.

    Both engines raise the same classes (sqlite3's PEP 249 tree): a broken constraint or an
    append-only trigger is an IntegrityError, anything else an OperationalError. The SQLSTATE stays
    on the error (`sqlstate`) and the driver's error is its cause.
    """
    message = (str(error).strip().splitlines() or [type(error).__name__])[0]
    refused = isinstance(error, psycopg.errors.IntegrityError | psycopg.errors.RaiseException)
    mapped: sqlite3.DatabaseError = (sqlite3.IntegrityError if refused else sqlite3.OperationalError)(message)
    mapped.sqlstate = error.sqlstate  # type: ignore[attr-defined]
    return mapped


class PgCursor:
    """A statement's results, shaped like the sqlite3 cursor the repositories read.

    In pipeline mode (`pipeline` given) the statement may still be queued: the first look at its
    results sends everything queued and waits for it, so statements whose results nobody reads
    travel to the server together with the next one that is read, or with COMMIT.
    """

    def __init__(
        self, cursor: psycopg.Cursor[Any] | psycopg.ServerCursor[Any], pipeline: psycopg.Pipeline | None = None
    ) -> None:
        self._cursor = cursor
        self._pipeline = pipeline

    def _has_rows(self) -> bool:
        if self._pipeline is not None and self._cursor.pgresult is None:
            try:
                self._pipeline.sync()
            except psycopg.Error as error:
                raise as_dbapi_error(error) from error
            self._pipeline = None
        return self._cursor.description is not None

    @property
    def rowcount(self) -> int:
        self._has_rows()
        return self._cursor.rowcount

    def fetchone(self) -> Any:
        return self._cursor.fetchone() if self._has_rows() else None

    def fetchall(self) -> list[Any]:
        return self._cursor.fetchall() if self._has_rows() else []

    def fetchmany(self, size: int) -> list[Any]:
        return self._cursor.fetchmany(size) if self._has_rows() else []

    def __iter__(self) -> Iterator[Any]:
        return iter(self._cursor) if self._has_rows() else iter(())


class PgDatabase:
    """What a repository function gets on PostgreSQL: `execute`, and `conn.execute` / `conn.executemany`."""

    dialect = "postgresql"

    def __init__(self, conn: psycopg.Connection[Any], pipeline: psycopg.Pipeline | None = None) -> None:
        self._conn = conn
        self._pipeline = pipeline  # set while the transaction runs in pipeline mode (see PgCursor)
        self._streams = 0  # server-side cursors opened, for their names
        self._write_locked = False

    def lock_writes(self) -> None:
        """Take the store-wide write lock (held until the transaction ends) unless this transaction has it."""
        if self._write_locked:
            return
        try:
            self._conn.execute("SELECT pg_advisory_xact_lock(%s)", [WRITE_LOCK])
        except psycopg.Error as error:
            raise as_dbapi_error(error) from error
        self._write_locked = True

    @property
    def conn(self) -> PgDatabase:
        """Itself: the repositories reach the driver as `db.conn`, which here is the same adapter."""
        return self

    @property
    def raw(self) -> psycopg.Connection[Any]:
        """The psycopg connection (for PostgreSQL-only statements such as COPY)."""
        return self._conn

    def execute(self, sql: str, parameters: Sequence[Any] | Mapping[str, Any] | None = None) -> PgCursor:
        """Run one statement (SQL as the repositories write it) and return its results."""
        cursor = self._conn.cursor()
        try:
            cursor.execute(translate(sql), parameters if parameters else None)
        except psycopg.Error as error:
            raise as_dbapi_error(error) from error
        return PgCursor(cursor, self._pipeline)

    def stream(self, sql: str, parameters: Sequence[Any] | Mapping[str, Any] | None = None) -> PgCursor:
        """Run one query whose rows are fetched from the server as they are read (`fetchmany`), not all at
        once: psycopg's ordinary cursor holds a whole result in memory, a server-side cursor holds none.
        Only inside a transaction (every `read` and `write` is one); closed with it; not in pipeline mode."""
        if self._pipeline is not None:
            raise RuntimeError(
                "a server-side cursor cannot run in pipeline mode: stream from a read or a serialised write"
            )
        self._streams += 1
        cursor = self._conn.cursor(name=f"jitbot_stream_{self._streams}")
        try:
            cursor.execute(translate(sql), parameters if parameters else None)
        except psycopg.Error as error:
            raise as_dbapi_error(error) from error
        return PgCursor(cursor)

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> PgCursor:
        """Run one statement for each row, pipelined."""
        # Built first: a row generator may itself query (the audit writer reads each request), and the
        # connection is busy for the whole of executemany.
        rows = list(rows)
        cursor = self._conn.cursor()
        try:
            cursor.executemany(translate(sql), rows)
        except psycopg.Error as error:
            raise as_dbapi_error(error) from error
        return PgCursor(cursor)
