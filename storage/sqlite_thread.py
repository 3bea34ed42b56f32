"""One SQLite connection on its own thread, fed by a queue: reads one at a time, writes committed in groups.

A SQLite connection must stay on one thread, and a file has one writer at a time, so `SqliteStore`
gives its connection a thread of its own and sends it every read and write as a job.

Group commit. Each commit fsyncs the WAL (synchronous=FULL), and the fsync, not the SQL, is most
of a small write's cost. So the thread takes every write already waiting in the queue when it
starts one (never waiting for more, at most `MAX_BATCH`) and runs them in ONE transaction, each
inside its own SAVEPOINT, then COMMITs once: one fsync for the group. While that fsync runs, the
next writes queue up and form the next group by themselves. Each caller keeps the semantics of a
transaction of its own:
- its `fn` sees the effects of the writes queued before it, in order;
- if its `fn` raises, only its own changes are undone (ROLLBACK TO its savepoint) and only it gets
  the exception;
- no caller hears of success before the COMMIT has returned, and if the COMMIT fails every member
  gets the error;
- each `fn` runs at most once. If a failure ends the whole transaction (SQLite rolls it back on
  SQLITE_FULL or an I/O error, a trigger may RAISE(ROLLBACK)), the work of the members before it is
  gone with it: they get `WriteRolledBack` (never a success), and the members after it run in a
  new transaction.
A lone write (nothing else queued) runs without savepoints, exactly as one BEGIN IMMEDIATE … COMMIT.
"""

from __future__ import annotations

import asyncio
import copy
import queue
import sqlite3
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import sqlite_utils

T = TypeVar("T")

MAX_BATCH = 64  # writes per transaction: bounds how long one group holds the write lock and its callers
_SAVEPOINT = "SAVEPOINT jitbot_write"
_ROLLBACK_TO = "ROLLBACK TO jitbot_write"
_RELEASE = "RELEASE jitbot_write"

_READ = "read"
_WRITE = "write"
_CALL = "call"
_STOP = "stop"


class WriteRolledBack(sqlite3.OperationalError):
    """A write whose `fn` succeeded, undone with the transaction it shared when a later write's failure ended it."""


@dataclass(eq=False, slots=True)
class _Job:
    kind: str
    fn: Callable[..., Any]
    loop: asyncio.AbstractEventLoop | None
    future: asyncio.Future[Any] | None
    value: Any = None
    error: BaseException | None = field(default=None)

    def fail(self, error: BaseException) -> None:
        self.value, self.error = None, error


_STOP_JOB = _Job(_STOP, lambda: None, None, None)


class SqliteThread:
    """Owns one SQLite connection (`db`) on one thread, and runs the jobs queued for it in order."""

    def __init__(self, name: str, *, max_batch: int = MAX_BATCH) -> None:
        self.db: sqlite_utils.Database | None = None
        self._queue: queue.SimpleQueue[_Job] = queue.SimpleQueue()
        self._max_batch = max_batch
        # The connection's query_only as last set here: _connect leaves it ON. Toggled only when a read
        # follows a write or the reverse, so a connection that only writes never pays for it.
        self._query_only = True
        # Daemon: a store nobody closed must not keep the interpreter from exiting. close() is what
        # finishes the queued work and closes the connection (SQLite is crash-safe either way).
        self._thread = threading.Thread(target=self._serve, name=name, daemon=True)
        self._thread.start()

    async def call(self, fn: Callable[[], T]) -> T:
        """Run `fn()` on the thread, after everything queued before it (opening, closing)."""
        return await self._submit(_CALL, fn)  # type: ignore[no-any-return]

    async def read(self, fn: Callable[[sqlite_utils.Database], T]) -> T:
        """Run `fn(db)` in one read transaction, with the connection query-only."""
        return await self._submit(_READ, fn)  # type: ignore[no-any-return]

    async def write(self, fn: Callable[[sqlite_utils.Database], T]) -> T:
        """Run `fn(db)` as one write, committed with the writes queued beside it (see the module docstring)."""
        return await self._submit(_WRITE, fn)  # type: ignore[no-any-return]

    def stop(self) -> None:
        """Let the thread end once it has run everything queued before this call, and wait for it."""
        self._queue.put(_STOP_JOB)
        self._thread.join()

    async def _submit(self, kind: str, fn: Callable[..., Any]) -> Any:
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._queue.put(_Job(kind, fn, loop, future))
        return await future

    # Everything below runs on the thread.

    def _serve(self) -> None:
        carried: _Job | None = None
        while True:
            job = carried if carried is not None else self._queue.get()
            carried = None
            if job.kind == _STOP:
                return
            if job.kind == _WRITE:
                batch = [job]
                while len(batch) < self._max_batch:
                    try:
                        more = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if more.kind != _WRITE:
                        carried = more  # a read or a close keeps its place after the writes before it
                        break
                    batch.append(more)
                self._run_writes(batch)
            elif job.kind == _READ:
                self._run_read(job)
            else:
                try:
                    job.value = job.fn()
                except BaseException as error:  # noqa: BLE001 - it belongs to the caller, who gets it
                    job.fail(error)
                _settle_later([job])

    def _run_read(self, job: _Job) -> None:
        if _cancelled(job):
            return  # nobody waits for it, and it changes nothing
        try:
            db = self._require_db()
            conn = db.conn
            self._set_query_only(conn, True)
            # One read transaction: every statement of `fn` sees the same moment, even while another
            # connection commits; in WAL mode it blocks no writer.
            conn.execute("BEGIN")
            try:
                job.value = job.fn(db)
            finally:
                if conn.in_transaction:
                    conn.execute("COMMIT")
        except BaseException as error:  # noqa: BLE001
            job.fail(error)
        _settle_later([job])

    def _run_writes(self, batch: list[_Job]) -> None:
        # A write cancelled before it started is dropped, as an executor drops a cancelled job; one
        # cancelled later still commits ("maybe committed", Store.write).
        jobs = [job for job in batch if not _cancelled(job)]
        try:
            db = self._require_db()
            self._set_query_only(db.conn, False)
            while jobs:
                jobs = self._transaction(db, jobs)
        except BaseException as error:  # noqa: BLE001 - our own bookkeeping failed: no member may hang
            for job in jobs:
                job.fail(_copy(error))
        _settle_later(batch)

    def _transaction(self, db: sqlite_utils.Database, jobs: list[_Job]) -> list[_Job]:
        """Run `jobs` in one transaction; return those left to run in a new one if a failure ended it early."""
        conn = db.conn
        grouped = len(jobs) > 1
        # IMMEDIATE takes the write lock up front, so a read-then-update inside `fn` can never hit
        # SQLITE_BUSY_SNAPSHOT if another process (a maintenance shell) holds the file.
        try:
            conn.execute("BEGIN IMMEDIATE")
        except BaseException as error:  # noqa: BLE001
            for job in jobs:
                job.fail(_copy(error))
            return []
        done: list[_Job] = []
        for index, job in enumerate(jobs):
            try:
                if grouped:
                    conn.execute(_SAVEPOINT)
                try:
                    job.value = job.fn(db)
                except BaseException as error:  # noqa: BLE001
                    job.fail(error)
                    if grouped and conn.in_transaction:
                        conn.execute(_ROLLBACK_TO)
                        conn.execute(_RELEASE)
                        continue
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                    _rolled_back(done, error)
                    return jobs[index + 1 :]
                if not conn.in_transaction:
                    # `fn` itself ended the transaction (a COMMIT or ROLLBACK of its own): nobody can
                    # say what of it, or of the members before it, was kept.
                    ended = sqlite3.OperationalError(
                        "the transaction ended inside the write: it may or may not be committed"
                    )
                    job.fail(ended)
                    for earlier in done:
                        earlier.fail(_copy(ended))
                    return jobs[index + 1 :]
                if grouped:
                    conn.execute(_RELEASE)
                done.append(job)
            except BaseException as error:  # noqa: BLE001 - a SAVEPOINT, RELEASE or ROLLBACK TO failed
                if job.error is None:
                    job.fail(error)
                if conn.in_transaction:
                    _quietly_roll_back(conn)
                _rolled_back(done, error)
                return jobs[index + 1 :]
        if not done:
            _quietly_roll_back(conn)  # every member failed: there is nothing to make durable
            return []
        try:
            conn.execute("COMMIT")
        except BaseException as error:  # noqa: BLE001
            # A COMMIT refused (a deferred constraint, SQLITE_FULL…) may leave the transaction open.
            if conn.in_transaction:
                _quietly_roll_back(conn)
            for job in done:
                job.fail(_copy(error))
        return []

    def _set_query_only(self, conn: sqlite3.Connection, on: bool) -> None:
        if self._query_only != on:
            conn.execute(f"PRAGMA query_only = {'ON' if on else 'OFF'}")
            self._query_only = on

    def _require_db(self) -> sqlite_utils.Database:
        if self.db is None:
            raise RuntimeError("the store is closed")
        return self.db


def _cancelled(job: _Job) -> bool:
    # Read from this thread: a task cancelled at this very moment is either seen or not, and both
    # are outcomes its caller accepts.
    return job.future is not None and job.future.cancelled()


def _rolled_back(done: list[_Job], cause: BaseException) -> None:
    """Fail the members whose work went with a transaction another member's failure ended."""
    for job in done:
        # The cause's type only: its message belongs to another caller.
        job.fail(
            WriteRolledBack(
                f"this write was rolled back with the transaction it shared with another write, which "
                f"failed with {type(cause).__module__}.{type(cause).__qualname__} and ended it; nothing "
                "of it was committed"
            )
        )


def _quietly_roll_back(conn: sqlite3.Connection) -> None:
    try:
        conn.execute("ROLLBACK")
    except sqlite3.Error:
        pass  # SQLite may have rolled back already; the members are failed either way


def _copy(error: BaseException) -> BaseException:
    """An exception of its own for each member (one instance raised in several tasks would share its traceback)."""
    try:
        return copy.copy(error)
    except Exception:  # noqa: BLE001 - an exception class copy cannot rebuild
        return sqlite3.OperationalError(str(error))


def _settle_later(jobs: list[_Job]) -> None:
    """Hand the outcomes to the event loops waiting for them: one wake-up per loop for the whole group."""
    by_loop: dict[asyncio.AbstractEventLoop, list[_Job]] = {}
    for job in jobs:
        if job.loop is not None:
            by_loop.setdefault(job.loop, []).append(job)
    for loop, theirs in by_loop.items():
        try:
            loop.call_soon_threadsafe(_settle, theirs)
        except RuntimeError:
            pass  # the loop is closed: nobody is waiting any more


def _settle(jobs: list[_Job]) -> None:
    for job in jobs:
        future = job.future
        if future is None or future.done():
            continue  # cancelled by its caller
        if job.error is None:
            future.set_result(job.value)
        elif isinstance(job.error, StopIteration):
            # asyncio refuses StopIteration as a future's exception (as run_in_executor's futures do).
            future.set_exception(RuntimeError(f"the database function raised {job.error!r}"))
        else:
            future.set_exception(job.error)
