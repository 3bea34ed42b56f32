"""The Store: where jitbot keeps its state, behind an async read/write façade with two engines.

`Store.open(setting)` opens the database JITBOT_DB names: a SQLite file path (the default, one
process) or a `postgresql://…` URL (`storage.postgres.PgStore`, any number of replicas). Both run
a repository's function `fn(db)` for `read(fn)` on one snapshot (every statement sees the same
moment) and, for `write(fn)`, inside one transaction: everything it does commits, or nothing. The
repositories write their SQL once, for both.

SQLite (`SqliteStore`): one writing connection on one dedicated thread (connections are not safe to
share across threads, and a single writer is all SQLite allows anyway), as datasette's database.py
does. Serialising all writes there is also what makes our compare-and-set transitions race-free
inside the process. Writes that queue up while a COMMIT fsyncs share the next transaction, each in
its own savepoint, and one COMMIT (group commit, `storage.sqlite_thread`): every caller still sees
its `fn` commit entirely or not at all, after the writes queued before it. On a file, reads run on a
second, query-only connection with a thread of its own, so they never wait behind a write's fsync
(WAL lets a reader work beside the writer); ':memory:' has one connection for both.

One process at a time may *run* the bot on a SQLite file: `Store.open(path, exclusive=True)` holds
`storage.run_lock.RunLock`, an OS lock on `<database>.lock`, until `close()`. Other commands (`bot.py audit`,
`bot.py identities`) open the file without it, since a short write beside a running bot is
ordinary SQLite concurrency; two schedulers revoking from one file is what must never happen.
"""

from __future__ import annotations

import abc
import re
import sqlite3
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import unquote, urlsplit

import sqlite_utils

from core.errors import StartupError
from core.secrets import SecretRegistry
from storage.run_lock import RunLock
from storage.sqlite_thread import SqliteThread

T = TypeVar("T")

MEMORY = ":memory:"
DEFAULT_DATABASE_PATH = "data/jitbot.db"

_URL_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*):(//)?")
# Schemes refused even without '//' ('sqlite:jit.db', SQLite's own 'file:jit.db'): nobody means a file named so.
_DATABASE_SCHEMES = frozenset({"file", "sqlite", "sqlite3", "postgres", "postgresql", "mysql", "mariadb"})
_POSTGRES_SCHEMES = frozenset({"postgres", "postgresql"})


def check_database_path(path: str | Path, *, name: str = "the database path") -> str:
    """Return `path` as text if it is a SQLite file path, ':memory:' or a `postgresql://` URL; StartupError
    if it is empty or any other URL.

    Other URLs are refused: not `sqlite://…`, nor SQLite's `file:` URIs. sqlite3 would open any of
    them as a file literally named after the URL (`mysql://host/db` would become a SQLite file under
    a `mysql:` directory), and the bot would run on data nobody backs up. The message names the
    scheme only, since a URL may carry a password.
    """
    text = str(path)
    if not text.strip():
        raise StartupError(f"{name} is empty: set it to a SQLite file path such as {DEFAULT_DATABASE_PATH}.")
    url = _URL_SCHEME.match(text)
    if url and url.group(2) and url.group(1).lower() in _POSTGRES_SCHEMES:
        return text
    if url and (url.group(2) or url.group(1).lower() in _DATABASE_SCHEMES):
        written = f"{url.group(1)}:{url.group(2) or ''}"
        raise StartupError(
            f"{name} is a {written} URL, but jitbot stores its data in a SQLite file or in PostgreSQL: "
            f"set it to a file path such as {DEFAULT_DATABASE_PATH}, or to postgresql://user:password@host/db."
        )
    return text


def is_postgres(setting: str | Path) -> bool:
    """Whether a JITBOT_DB setting names a PostgreSQL database (a postgresql:// or postgres:// URL)."""
    url = _URL_SCHEME.match(str(setting))
    return bool(url and url.group(2) and url.group(1).lower() in _POSTGRES_SCHEMES)


def redact_url(url: str) -> str:
    """The URL with its password (and any query string, which may carry one) replaced: safe to log."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "postgresql://***"
    user = f"{unquote(parts.username)}{':***' if parts.password is not None else ''}@" if parts.username else ""
    query = "?***" if parts.query else ""
    return f"{parts.scheme}://{user}{host}{port}{parts.path}{query}"


def url_password(url: str) -> str | None:
    """The password written in the URL (or its query string), if any, to register as a secret."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    if parts.password:
        return unquote(parts.password)
    found = re.search(r"(?:^|&)password=([^&]*)", parts.query)
    return unquote(found.group(1)) if found else None


def dialect(db: object) -> str:
    """Which engine a repository function's `db` handle talks to: "sqlite" or "postgresql"."""
    return getattr(db, "dialect", "sqlite")


def stream(db: object, sql: str, parameters: object = None) -> Any:
    """A cursor over a large result that `fetchmany` reads in batches without the whole result in memory:
    SQLite's cursor already does; on PostgreSQL a server-side cursor (`PgDatabase.stream`)."""
    if dialect(db) == "postgresql":
        return db.stream(sql, parameters)  # type: ignore[attr-defined]
    return db.execute(sql, parameters)  # type: ignore[attr-defined]


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


class Store(abc.ABC):
    """Where jitbot keeps its state; every access goes through `read` or `write` (see the module docstring)."""

    dialect: str = ""  # "sqlite" or "postgresql", for the few statements that differ
    path: str  # where the data lives, fit for messages (a URL's password is never part of it)

    @classmethod
    async def open(
        cls,
        path: str | Path,
        *,
        busy_timeout_ms: int = 5000,
        exclusive: bool = False,
        secrets: SecretRegistry | None = None,
    ) -> Store:
        """Open the database `path` names (a SQLite file, ':memory:' or a postgresql:// URL) and migrate it.

        `exclusive=True` is for running the bot: on SQLite it first takes the file's `RunLock`; on
        PostgreSQL see `storage.postgres.PgStore.open`. `secrets` (the runtime's registry) learns a
        URL's password so that nothing quoting it can print it.
        """
        text = check_database_path(path)
        if is_postgres(text):
            from storage.postgres import PgStore  # psycopg loads only when PostgreSQL is used

            return await PgStore.open(text, exclusive=exclusive, secrets=secrets)
        return await SqliteStore.open_file(text, busy_timeout_ms=busy_timeout_ms, exclusive=exclusive)

    @abc.abstractmethod
    async def read(self, fn: Callable[[sqlite_utils.Database], T]) -> T:
        """Run `fn(db)` with the database read-only while it runs."""

    @abc.abstractmethod
    async def write(self, fn: Callable[[sqlite_utils.Database], T]) -> T:
        """Run `fn(db)` inside one transaction: it all commits or none of it."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Release the database (idempotent)."""

    @property
    @abc.abstractmethod
    def closed(self) -> bool:
        """Whether close() has been called."""

    async def __aenter__(self) -> Store:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()


class SqliteStore(Store):
    """Owns the jitbot SQLite database on one thread (see the module docstring)."""

    dialect = "sqlite"

    def __init__(
        self,
        path: str,
        thread: SqliteThread,
        run_lock: RunLock | None = None,
        reader: SqliteThread | None = None,
    ) -> None:
        self.path = path
        self._thread: SqliteThread | None = thread
        self._reader = reader  # None for ':memory:', whose reads share the one connection
        self._run_lock = run_lock

    @classmethod
    async def open_file(cls, path: str | Path, *, busy_timeout_ms: int = 5000, exclusive: bool = False) -> SqliteStore:
        """Open (creating if needed) the database at `path` or ":memory:", and apply migrations.

        `exclusive=True` is for running the bot: it first takes the database's `RunLock`, held until
        `close()`, so a second bot on the same file gets a StartupError naming the first.
        """
        path = check_database_path(path)
        if is_postgres(path):
            raise StartupError("a postgresql:// URL is not a SQLite file: open it with Store.open")
        thread = SqliteThread("jitbot-sqlite")
        reader: SqliteThread | None = None
        run_lock: RunLock | None = None
        try:
            if exclusive and path != MEMORY:
                # Before connecting: a refused process must not even migrate the file under the holder.
                run_lock = await thread.call(lambda: RunLock.acquire(path))
            thread.db = await thread.call(lambda: _connect(path, busy_timeout_ms))
            if path != MEMORY:
                reader = SqliteThread("jitbot-sqlite-read")
                reader.db = await reader.call(lambda: _connect_reader(path, busy_timeout_ms))
        except BaseException:
            await _close_threads(reader, thread)
            if run_lock is not None:
                run_lock.release()
            raise
        return cls(path, thread, run_lock, reader)

    async def read(self, fn: Callable[[sqlite_utils.Database], T]) -> T:
        """Run `fn(db)` in one read transaction on a query-only connection.

        On a file that is the read connection's own thread, beside the writer (WAL lets a reader run
        while a COMMIT fsyncs): a read sees every write whose `write()` returned before it was asked.
        """
        writer = self._require_thread()
        return await (self._reader or writer).read(fn)

    async def write(self, fn: Callable[[sqlite_utils.Database], T]) -> T:
        """Run `fn(db)` on the database thread as one transaction of its own: it all commits or none of it.

        Writes queued together share one COMMIT, each in its own savepoint (`storage.sqlite_thread`).
        If the awaiting task is cancelled before the write starts it is dropped; once started it still
        finishes on the thread, and commits if `fn` succeeds: callers must treat a cancelled write as
        "maybe committed".
        """
        return await self._require_thread().write(fn)

    async def close(self) -> None:
        """Close the connection (SQLite checkpoints the WAL), stop the thread, release the run lock. Idempotent."""
        if self._thread is None:
            return
        thread, self._thread = self._thread, None
        reader, self._reader = self._reader, None
        try:
            # The reader first: the last connection to close checkpoints the WAL, and that is the writer's.
            await _close_threads(reader, thread)
        finally:
            # Last, after the connection is closed: the next bot must not start on a file still in use.
            if self._run_lock is not None:
                self._run_lock.release()

    @property
    def closed(self) -> bool:
        """Whether close() has been called."""
        return self._thread is None

    def _require_thread(self) -> SqliteThread:
        if self._thread is None:
            raise RuntimeError("the store is closed")
        return self._thread

    def _require_db(self) -> sqlite_utils.Database:
        db = self._require_thread().db
        if db is None:
            raise RuntimeError("the store is closed")
        return db


async def _close_threads(*threads: SqliteThread | None) -> None:
    """Close each thread's connection (after the jobs queued before) and stop it, in the order given."""
    for thread in threads:
        if thread is None:
            continue
        try:
            db = thread.db
            if db is not None:
                await thread.call(db.close)
                thread.db = None
        finally:
            thread.stop()


def _connect_reader(path: str, busy_timeout_ms: int) -> sqlite_utils.Database:
    """A second connection to a migrated file, for reads only, created on the calling (reader) thread."""

    def configure(db: sqlite_utils.Database) -> None:
        db.execute("PRAGMA synchronous = FULL")  # as the writer's, should anything ever sync through it
        db.execute("PRAGMA query_only = ON")  # for good: nothing is ever written through it

    return _open(path, busy_timeout_ms, configure)


def _connect(path: str, busy_timeout_ms: int) -> sqlite_utils.Database:
    """Create the Database on the calling (worker) thread, configure it and migrate it."""
    from storage.migrations import apply_migrations  # migrations import helpers from this module

    if path != MEMORY:
        try:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StartupError(f"cannot open database {path}: {exc}") from exc

    def configure(db: sqlite_utils.Database) -> None:
        if path != MEMORY:
            db.execute("PRAGMA journal_mode = WAL")
        # FULL, not NORMAL. WAL+NORMAL already survives a process crash or kill -9 (docs/guarantees.md), but
        # after a power loss or a VM/host crash it can lose every commit since the last checkpoint.
        # Losing an `approved` row whose grant already reached the target system would leave access
        # that nothing ever revokes, so each commit fsyncs the WAL. It costs ~0.3 ms per commit on
        # a cloud SSD; jitbot commits at human rates, and bulk work batches into one transaction.
        db.execute("PRAGMA synchronous = FULL")
        apply_migrations(db)
        db.execute("PRAGMA query_only = ON")

    return _open(path, busy_timeout_ms, configure)


def _open(path: str, busy_timeout_ms: int, configure: Callable[[sqlite_utils.Database], None]) -> sqlite_utils.Database:
    """Open a connection the way both of a store's connections need it, then `configure` it; close it on failure."""
    try:
        # execute_plugins=False: no third-party sqlite-utils plugin gets to touch our connection.
        db = sqlite_utils.Database(path, execute_plugins=False)
    except (OSError, sqlite3.Error) as exc:
        raise StartupError(f"cannot open database {path}: {exc}") from exc
    try:
        # Driver-level autocommit: no transaction is ever opened implicitly (each read and write is
        # one explicit BEGIN … COMMIT).
        db.conn.isolation_level = None
        db.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
        db.execute("PRAGMA foreign_keys = ON")
        configure(db)
    except sqlite3.DatabaseError as exc:
        db.close()
        raise StartupError(f"cannot use database {path}: {exc}") from exc
    except BaseException:
        db.close()
        raise
    return db
