"""Which write transactions may run beside one another on PostgreSQL, and the lock that orders the audit chain.

On SQLite every write transaction runs alone (one writer per file), and the repositories were written
for that. On PostgreSQL `PgStore.write` gives the same: a transaction first takes one advisory lock
(`WRITE_LOCK`), so replicas' writes never interleave. That lock is held for the whole transaction,
including each round trip between the bot and the server, and serialising every write of every
replica caps what several replicas can do together.

A write function wrapped in `concurrent(fn)` declares that it is correct beside other writers
without that lock, because each of its statements is atomic on its own: a compare-and-set
(`UPDATE … WHERE status = ?`, retried when it loses), an upsert with a guard, a keyed insert or
delete. On PostgreSQL it runs at READ COMMITTED and row locks order it against other writers of the
same rows; on SQLite it runs as every write does. What still needs one total order is the audit
chain (each row names the hash of the one before, `seq` has no gaps): `AuditWriter` calls
`lock_audit_chain(db)` just before it reads the chain's head, so the lock is taken as late as
possible and held only for the head read, the insert and the COMMIT. Commit order therefore equals
`seq` order, as with the whole-transaction lock.

A concurrent transaction holds row locks before it waits for the chain lock, while a serialised one
holds the chain lock first; when both want the same row PostgreSQL breaks the deadlock by rolling
one back, and `PgStore.write` runs that one again (every write function acts only through `db`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Generic, TypeVar

from storage.db import dialect

T = TypeVar("T")


class Concurrent(Generic[T]):
    """A write function that is safe beside other writers (see the module docstring); call it as `fn`."""

    __slots__ = ("fn",)

    def __init__(self, fn: Callable[[Any], T]) -> None:
        self.fn = fn

    def __call__(self, db: Any) -> T:
        return self.fn(db)


def concurrent(fn: Callable[[Any], T]) -> Concurrent[T]:
    """Mark `fn` as a write transaction that needs no store-wide lock (its audit rows take the chain lock)."""
    return Concurrent(fn)


def is_concurrent(fn: object) -> bool:
    """Whether `fn` was marked with `concurrent`."""
    return isinstance(fn, Concurrent)


def lock_audit_chain(db: Any) -> None:
    """Take the lock that orders audit rows, if this transaction does not hold it yet (PostgreSQL only:
    SQLite's write transaction already excludes every other writer)."""
    if dialect(db) == "postgresql":
        db.lock_writes()
