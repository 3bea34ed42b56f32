"""The PostgreSQL store: the same `read(fn)` / `write(fn)` contract as the SQLite one, for several replicas.

`JITBOT_DB=postgresql://user:password@host:5432/jitbot` selects it. The repositories are written
once: each hands the store a function of a database handle, and here that handle is
`storage.pg_database.PgDatabase`, a thin adapter over a pooled psycopg 3 connection that speaks the
repositories' SQL (`?` placeholders, `group_concat`) in PostgreSQL's dialect. Functions run on a
thread pool as large as the connection pool, so reads run side by side.

Writes keep SQLite's semantics: `write(fn)` runs `fn` in one transaction that first takes a
transaction-scoped advisory lock (`pg_advisory_xact_lock`), so write transactions are serialised
across every replica as SQLite serialises them in one file. That is what most repositories were
written for: a read, a check in Python, then an update must not interleave with another writer.
A write function marked `concurrent` (storage/concurrent_writes.py) is correct without that lock,
and runs beside other writers: a compare-and-set on a request, a lease's upsert. Every audit row
still takes the lock (`PgDatabase.lock_writes`), just before it reads the chain's head and held
until COMMIT, so the audit chain keeps one total order whoever writes it. A transaction that
PostgreSQL rolls back to break a deadlock (or a serialization failure) is run again, a few times.
Write transactions are READ COMMITTED whatever the database's default (each statement sees what
committed before it began: the chain head read after its lock, a compare-and-set after a lost race).
Reads take no lock and see one snapshot.

The URL's password never reaches a log line or an error: errors name the server as `redact_url`
writes it, and the password is registered with the runtime's SecretRegistry so anything that quotes
it anyway is scrubbed.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import psycopg
from psycopg_pool import ConnectionPool, PoolTimeout

from core.errors import StartupError
from core.secrets import SecretRegistry
from storage.concurrent_writes import is_concurrent
from storage.db import Store, redact_url, url_password
from storage.pg_database import PgDatabase, as_dbapi_error

T = TypeVar("T")

POOL_SIZE = 8  # connections (and threads) per replica: reads in parallel, writes one at a time anyway
CONNECT_TIMEOUT = 10.0  # seconds to reach the server at start before refusing to run
# SQLSTATEs after which PostgreSQL has rolled the whole transaction back and running it again is the
# documented answer: deadlock_detected, serialization_failure.
RETRYABLE = frozenset({"40P01", "40001"})
WRITE_ATTEMPTS = 5
# Seconds of silence before the server probes a replica's connection, between probes, and probes
# unanswered before it ends the session: a dead replica's locks are freed within 5 + 2 × 3 = 11 s.
KEEPALIVE_IDLE, KEEPALIVE_INTERVAL, KEEPALIVE_COUNT = 5, 2, 3
# Milliseconds a write transaction may wait for its replica between statements before the server ends
# the session: no write function does slow work of its own between statements (a bulk insert encodes
# its rows before it begins), so a pause that long means the process is stopped (SIGSTOP, a debugger,
# a paused container, which still answer keepalives from their kernel), and the audit chain's lock it
# may hold must go to the other replicas.
IDLE_IN_WRITE_MS = 5000
_IDLE_LIMIT = "SELECT set_config('idle_in_transaction_session_timeout', %s, true)"


class PgStore(Store):
    """Owns the connection pool of one PostgreSQL database; every access goes through `read` or `write`."""

    dialect = "postgresql"

    def __init__(
        self,
        url: str,
        pool: ConnectionPool[Any],
        executor: ThreadPoolExecutor,
    ) -> None:
        self.url = url
        self.path = redact_url(url)  # what messages may show of where the data lives
        self._pool: ConnectionPool[Any] | None = pool
        self._executor = executor

    @classmethod
    async def open(  # type: ignore[override]
        cls,
        url: str,
        *,
        exclusive: bool = False,
        secrets: SecretRegistry | None = None,
        pool_size: int = POOL_SIZE,
        connect_timeout: float = CONNECT_TIMEOUT,
    ) -> PgStore:
        """Connect (a StartupError naming the server, never the password, when it cannot), and migrate.

        `exclusive` is accepted for the Store interface and changes nothing: any number of bots may run
        on one PostgreSQL database; they share the work through leases (core/claims.py).
        """
        password = url_password(url)
        if password and secrets is not None:
            secrets.register(password)
        where = redact_url(url)
        executor = ThreadPoolExecutor(max_workers=pool_size, thread_name_prefix="jitbot-pg")
        loop = asyncio.get_running_loop()
        pool: ConnectionPool[Any] = ConnectionPool(
            url,
            min_size=1,
            max_size=pool_size,
            open=False,
            name="jitbot",
            kwargs={"autocommit": True, "connect_timeout": max(1, int(connect_timeout))},
            configure=_configure_session,
        )
        try:
            await loop.run_in_executor(executor, _open_pool, pool, url, where, connect_timeout)
            await loop.run_in_executor(executor, _migrate, pool, where, url)
        except BaseException:
            await loop.run_in_executor(executor, pool.close)
            executor.shutdown(wait=True)
            raise
        return cls(url, pool, executor)

    async def read(self, fn: Callable[[Any], T]) -> T:
        """Run `fn(db)` on a pooled connection in a read-only transaction."""
        return await self._submit(self._run_read, fn)

    async def write(self, fn: Callable[[Any], T]) -> T:
        """Run `fn(db)` in one transaction, serialised with every other write unless `fn` is marked
        `concurrent` (see the module docstring). `fn` may run again if PostgreSQL rolls it back to
        break a deadlock, so it must act only through `db`.

        If the awaiting task is cancelled the transaction still finishes on its thread, and commits
        if `fn` succeeds; callers must treat a cancelled write as "maybe committed".
        """
        return await self._submit(self._run_write, fn)

    async def close(self) -> None:
        """Close the pool and stop the threads. Idempotent."""
        if self._pool is None:
            return
        pool, self._pool = self._pool, None
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(self._executor, pool.close)
        finally:
            self._executor.shutdown(wait=True)

    @property
    def closed(self) -> bool:
        """Whether close() has been called."""
        return self._pool is None

    async def _submit(self, runner: Callable[[Callable[[Any], T]], T], fn: Callable[[Any], T]) -> T:
        if self._pool is None:
            raise RuntimeError("the store is closed")
        return await asyncio.get_running_loop().run_in_executor(self._executor, runner, fn)

    def _run_read(self, fn: Callable[[Any], T]) -> T:
        try:
            with self._require_pool().connection() as conn:
                # REPEATABLE READ: one snapshot for all of `fn`, as SQLite gives. Under the default READ
                # COMMITTED each statement would see the commits made since the last one (a count and its
                # page from two moments). A read-only transaction never fails to serialise at this level.
                # Said in the BEGIN itself (the connection's settings are only what BEGIN says): no
                # round trip of its own.
                _begin_as(conn, psycopg.IsolationLevel.REPEATABLE_READ, read_only=True)
                with conn.transaction():
                    return fn(PgDatabase(conn))
        except psycopg.Error as error:  # the connection itself, or COMMIT
            raise as_dbapi_error(error) from error

    def _run_write(self, fn: Callable[[Any], T]) -> T:
        for attempt in range(1, WRITE_ATTEMPTS + 1):
            try:
                with self._require_pool().connection() as conn:
                    # READ COMMITTED whatever the server's default (see _configure_session for why).
                    _begin_as(conn, psycopg.IsolationLevel.READ_COMMITTED, read_only=None)
                    if not is_concurrent(fn):
                        with conn.transaction():
                            conn.execute(_IDLE_LIMIT, [str(IDLE_IN_WRITE_MS)])  # the lock below is the chain's too
                            db = PgDatabase(conn)
                            db.lock_writes()
                            return fn(db)
                    # Pipeline mode: BEGIN goes with the first statement, the audit chain's lock with its
                    # head read, the audit INSERT with COMMIT: two round trips while the lock is held.
                    with conn.pipeline() as pipeline, conn.transaction():
                        # Queued: it travels with BEGIN and the first statement, no round trip of its own.
                        conn.execute(_IDLE_LIMIT, [str(IDLE_IN_WRITE_MS)])
                        return fn(PgDatabase(conn, pipeline))
            # psycopg's own error: the connection itself, or COMMIT; sqlite3's: a statement of `fn`, already mapped.
            except (psycopg.Error, sqlite3.OperationalError) as error:
                if getattr(error, "sqlstate", None) in RETRYABLE and attempt < WRITE_ATTEMPTS:
                    continue
                if isinstance(error, psycopg.Error):
                    raise as_dbapi_error(error) from error
                raise
        raise AssertionError("unreachable: the last attempt returns or raises")

    def _require_pool(self) -> ConnectionPool[Any]:
        if self._pool is None:
            raise RuntimeError("the store is closed")
        return self._pool


def _begin_as(conn: psycopg.Connection[Any], level: psycopg.IsolationLevel, *, read_only: bool | None) -> None:
    """What the connection's next BEGIN says (set on each use: a pooled connection keeps the last one's)."""
    if conn.isolation_level != level:
        conn.isolation_level = level
    if conn.read_only != read_only:
        conn.read_only = read_only


def _configure_session(conn: psycopg.Connection[Any]) -> None:
    """Set up each pooled connection's session.

    Write transactions begin READ COMMITTED whatever the server's or database's default (`_run_write`
    says so in each BEGIN, `_begin_as`): each statement
    then sees what committed before it started, which the compare-and-sets and the audit chain rely on
    (the chain head is read after its lock is taken; a snapshot taken at the transaction's first statement,
    as REPEATABLE READ or SERIALIZABLE take, would miss rows committed while it waited). Reads choose
    their own level (`_run_read`).

    The server probes the connection when it is quiet (TCP keepalives), so a replica whose machine dies
    or is cut off mid-transaction loses its session, and with it the audit chain's lock and its row
    locks, within seconds rather than the operating system's default of over two hours, during which
    every other replica's audit rows would wait. A live replica answers the probes from its kernel, so a
    slow transaction is never cut short. (Over a unix socket these settings do nothing, nor need to.)
    """
    conn.execute(
        "SELECT set_config('tcp_keepalives_idle', %s, false), set_config('tcp_keepalives_interval', %s, false), "
        "set_config('tcp_keepalives_count', %s, false)",
        [str(KEEPALIVE_IDLE), str(KEEPALIVE_INTERVAL), str(KEEPALIVE_COUNT)],
    )


def _describe(error: BaseException, where: str, url: str | None = None) -> str:
    """An error's first line, with the URL (if quoted) replaced by its redacted form."""
    text = (str(error).strip().splitlines() or [type(error).__name__])[0]
    if url:
        text = text.replace(url, where)
        password = url_password(url)
        if password:
            text = text.replace(password, "***")
    return text


def _open_pool(pool: ConnectionPool[Any], url: str, where: str, timeout: float) -> None:
    # One plain connection first: an unknown host or a refused password is reported at once and
    # precisely, where the pool would only retry until its timeout.
    try:
        psycopg.connect(url, autocommit=True, connect_timeout=max(1, int(timeout))).close()
    except psycopg.Error as error:
        raise StartupError(
            f"cannot connect to the PostgreSQL database {where}: {_describe(error, where, url)}"
        ) from None
    try:
        pool.open(wait=True, timeout=timeout)
    except PoolTimeout:
        raise StartupError(
            f"cannot connect to the PostgreSQL database {where} within {timeout:g}s: check JITBOT_DB, "
            "that the server is up and that this host may connect"
        ) from None


def _migrate(pool: ConnectionPool[Any], where: str, url: str) -> None:
    from storage.pg_migrations import apply_pg_migrations

    try:
        with pool.connection() as conn:
            apply_pg_migrations(conn)
    except psycopg.Error as error:
        raise StartupError(f"cannot use the PostgreSQL database {where}: {_describe(error, where)}") from None
