"""The Store: one SQLite connection on one dedicated thread, behind an async read/write façade.

SQLite connections are not safe to share across threads, and a single writer is all SQLite allows
anyway, so every statement runs on one worker thread (as datasette's database.py does). Serialising
all work there is also what makes our compare-and-set transitions race-free inside the process.
`write(fn)` wraps `fn` in one `BEGIN IMMEDIATE … COMMIT`: everything it does commits, or nothing.
"""

from __future__ import annotations

import asyncio
import sqlite3
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Callable, TypeVar

import sqlite_utils

from core.errors import StartupError

T = TypeVar("T")

MEMORY = ":memory:"


def to_db_time(value: datetime) -> str:
    """Format an aware datetime as the stored UTC text form, e.g. '2026-11-21T15:59:11.123456Z'.

    One fixed-width form for every stored instant, so `expires_at <= ?` compares correctly as
    text: microseconds are always written (even .000000) and the year always has four digits.
    """
    offset = value.utcoffset()
    if offset is None:
        raise ValueError(f"naive datetime {value!r}: jitbot stores only timezone-aware UTC instants")
    if offset:
        value = value - offset
    # isoformat is several times faster than strftime, which matters when writing 100k rows; its
    # first 26 characters are 'YYYY-MM-DDTHH:MM:SS.ffffff', the offset that follows is dropped.
    return value.isoformat(timespec="microseconds")[:26] + "Z"


def from_db_time(text: str) -> datetime:
    """Parse the stored text form back into an aware UTC datetime."""
    # fromisoformat (3.11+) reads the trailing 'Z' and is much faster than strptime for 100k rows.
    return datetime.fromisoformat(text)


def optional_db_time(value: datetime | None) -> str | None:
    """to_db_time that passes None through."""
    return None if value is None else to_db_time(value)


def optional_from_db_time(text: str | None) -> datetime | None:
    """from_db_time that passes None through."""
    return None if text is None else from_db_time(text)


class Store:
    """Owns the jitbot SQLite database; every access goes through `read` or `write`."""

    def __init__(self, path: str, executor: ThreadPoolExecutor, db: sqlite_utils.Database) -> None:
        self.path = path
        self._executor = executor
        self._db: sqlite_utils.Database | None = db

    @classmethod
    async def open(cls, path: str | Path, *, busy_timeout_ms: int = 5000) -> "Store":
        """Open (creating if needed) the database at `path` or ":memory:", and apply migrations."""
        path = str(path)
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="jitbot-sqlite")
        loop = asyncio.get_running_loop()
        try:
            db = await loop.run_in_executor(executor, _connect, path, busy_timeout_ms)
        except BaseException:
            executor.shutdown(wait=True)
            raise
        return cls(path, executor, db)

    async def read(self, fn: Callable[[sqlite_utils.Database], T]) -> T:
        """Run `fn(db)` on the database thread; the connection is query-only while it runs."""
        return await self._submit(self._run_read, fn)

    async def write(self, fn: Callable[[sqlite_utils.Database], T]) -> T:
        """Run `fn(db)` on the database thread inside one transaction: it all commits or none of it.

        If the awaiting task is cancelled the transaction still finishes on the thread, and commits
        if `fn` succeeds; callers must treat a cancelled write as "maybe committed".
        """
        return await self._submit(self._run_write, fn)

    async def close(self) -> None:
        """Close the connection (SQLite checkpoints the WAL) and stop the thread. Idempotent."""
        if self._db is None:
            return
        db, self._db = self._db, None
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(self._executor, db.close)
        finally:
            self._executor.shutdown(wait=True)

    @property
    def closed(self) -> bool:
        """Whether close() has been called."""
        return self._db is None

    async def __aenter__(self) -> "Store":
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def _submit(self, runner: Callable[[Callable[[sqlite_utils.Database], T]], T], fn) -> T:
        if self._db is None:
            raise RuntimeError("the store is closed")
        return await asyncio.get_running_loop().run_in_executor(self._executor, runner, fn)

    def _run_read(self, fn: Callable[[sqlite_utils.Database], T]) -> T:
        db = self._require_db()
        return fn(db)

    def _run_write(self, fn: Callable[[sqlite_utils.Database], T]) -> T:
        db = self._require_db()
        conn = db.conn
        conn.execute("PRAGMA query_only = OFF")
        try:
            # IMMEDIATE takes the write lock up front, so a read-then-update inside `fn` can never
            # hit SQLITE_BUSY_SNAPSHOT if another process (a maintenance shell) holds the file.
            conn.execute("BEGIN IMMEDIATE")
            try:
                result = fn(db)
                conn.execute("COMMIT")
            except BaseException:
                # A failed COMMIT or a RAISE(ROLLBACK) trigger may already have ended the transaction.
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
        finally:
            conn.execute("PRAGMA query_only = ON")
        return result

    def _require_db(self) -> sqlite_utils.Database:
        if self._db is None:
            raise RuntimeError("the store is closed")
        return self._db


def _connect(path: str, busy_timeout_ms: int) -> sqlite_utils.Database:
    """Create the Database on the calling (worker) thread, configure it and migrate it."""
    from storage.migrations import apply_migrations  # migrations import helpers from this module

    try:
        if path != MEMORY:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        # execute_plugins=False: no third-party sqlite-utils plugin gets to touch our connection.
        db = sqlite_utils.Database(path, execute_plugins=False)
    except (OSError, sqlite3.Error) as exc:
        raise StartupError(f"cannot open database {path}: {exc}") from exc
    try:
        # Driver-level autocommit: no transaction is ever opened implicitly, only by write().
        db.conn.isolation_level = None
        db.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
        db.execute("PRAGMA foreign_keys = ON")
        if path != MEMORY:
            db.execute("PRAGMA journal_mode = WAL")
        # FULL, not NORMAL. WAL+NORMAL already survives a process crash or kill -9 (SPEC §5), but
        # after a power loss or a VM/host crash it can lose every commit since the last checkpoint.
        # Losing an `approved` row whose grant already reached the target system would leave access
        # that nothing ever revokes, so each commit fsyncs the WAL. It costs ~0.3 ms per commit on
        # a cloud SSD; jitbot commits at human rates, and bulk work batches into one transaction.
        db.execute("PRAGMA synchronous = FULL")
        apply_migrations(db)
        db.execute("PRAGMA query_only = ON")
    except sqlite3.DatabaseError as exc:
        db.close()
        raise StartupError(f"cannot use database {path}: {exc}") from exc
    except BaseException:
        db.close()
        raise
    return db
