"""LeaseRepo: the `leases` table, where replicas record which of them acts on what, until when.

A lease is a row (name, owner, lease_until). Taking one is a single upsert that only overwrites a
row that is ours already or has expired, and reports (RETURNING) the rows it wrote, so two replicas
can never both hold a name: the statement is atomic on its own (SQLite's single writer; on
PostgreSQL the row lock, or the unique index for a new name, makes the second writer re-check the
guard against the first one's row). Renewing and releasing are one keyed statement per name. So lease
transactions need no store-wide lock (storage/concurrent_writes.py) and write no audit row; every
one of them writes its names in sorted order, so two replicas claiming, renewing or releasing
overlapping sets lock rows in the same order and never deadlock.
Lease times are the replicas' wall clock (UTC), not the bot's injectable clock: a lease measures
real seconds since a process last showed it was alive. Keep the replicas' clocks in sync (NTP); a
skew well under the lease lifetime is harmless.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Callable, Collection
from datetime import UTC, datetime, timedelta

import sqlite_utils

from storage.concurrent_writes import concurrent
from storage.db import Store, to_db_time

_CLAIM_CONFLICT = (
    " ON CONFLICT (name) DO UPDATE SET owner = excluded.owner, lease_until = excluded.lease_until "
    "WHERE leases.owner = excluded.owner OR leases.lease_until <= ? RETURNING name"
)


_CHUNK = 500  # names per statement: far below either engine's limit on parameters


def process_owner() -> str:
    """A name for this process in the leases table: host, pid and a random part (pids are reused)."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def _placeholders(names: Collection[str]) -> str:
    return ", ".join("?" * len(names))


def _chunks(names: Collection[str]) -> list[list[str]]:
    """`names` without repeats, sorted (one lock order for every replica), in statement-sized chunks."""
    ordered = sorted(set(names))
    return [ordered[start : start + _CHUNK] for start in range(0, len(ordered), _CHUNK)]


class LeaseRepo:
    """Takes, renews, releases and inspects leases for one owner (this process)."""

    def __init__(self, store: Store, owner: str | None = None, *, wall: Callable[[], datetime] | None = None) -> None:
        self._store = store
        self.owner = owner or process_owner()
        self._wall = wall or (lambda: datetime.now(UTC))

    async def claim(self, names: Collection[str], ttl: float) -> set[str]:
        """Take every free, expired or already-ours lease of `names` for `ttl` seconds; return those now ours."""
        chunks = _chunks(names)
        if not chunks:
            return set()
        now = self._wall()
        until, now_text = to_db_time(now + timedelta(seconds=ttl)), to_db_time(now)

        def apply(db: sqlite_utils.Database) -> set[str]:
            taken: set[str] = set()
            for chunk in chunks:
                sql = "INSERT INTO leases (name, owner, lease_until) VALUES " + ", ".join(["(?, ?, ?)"] * len(chunk))
                params = [value for name in chunk for value in (name, self.owner, until)]
                taken.update(row[0] for row in db.execute(sql + _CLAIM_CONFLICT, [*params, now_text]).fetchall())
            return taken

        return await self._store.write(concurrent(apply))

    async def renew(self, names: Collection[str], ttl: float) -> set[str]:
        """Extend our leases of `names` by `ttl` seconds from now; return those still ours."""
        ordered = sorted(set(names))
        if not ordered:
            return set()
        until = to_db_time(self._wall() + timedelta(seconds=ttl))

        def apply(db: sqlite_utils.Database) -> set[str]:
            # One keyed statement per name, in the order claims take them: `name IN (…)` would lock the rows
            # in whatever order the plan finds them (on PostgreSQL, where they lie on disk), and a renewal
            # locking b then a beside a claim locking a then b is a deadlock. All are sent before any
            # result is read (one round trip on PostgreSQL).
            sql = "UPDATE leases SET lease_until = ? WHERE name = ? AND owner = ? RETURNING name"
            cursors = [db.execute(sql, [until, name, self.owner]) for name in ordered]
            return {row[0] for cursor in cursors for row in cursor.fetchall()}

        return await self._store.write(concurrent(apply))

    async def release(self, names: Collection[str]) -> None:
        """Give up our leases of `names` (another owner's are left alone)."""
        ordered = sorted(set(names))
        if not ordered:
            return
        # Keyed and in the order claims lock rows, as in `renew`.
        await self._store.write(
            concurrent(
                lambda db: db.conn.executemany(
                    "DELETE FROM leases WHERE name = ? AND owner = ?", [(name, self.owner) for name in ordered]
                )
            )
        )

    async def held_elsewhere(self, names: Collection[str]) -> set[str]:
        """Those of `names` leased, unexpired, by another owner."""
        chunks = _chunks(names)  # a sweep may ask about thousands of rows
        now = to_db_time(self._wall())

        def query(db: sqlite_utils.Database) -> set[str]:
            held: set[str] = set()
            for chunk in chunks:
                sql = (
                    f"SELECT name FROM leases WHERE owner <> ? AND lease_until > ? AND name IN ({_placeholders(chunk)})"
                )
                held.update(row[0] for row in db.execute(sql, [self.owner, now, *chunk]))
            return held

        return await self._store.read(query)

    async def holders(self) -> dict[str, int]:
        """How many unexpired leases each owner holds (what /metrics and operators see of the replicas)."""
        now = to_db_time(self._wall())
        sql = "SELECT owner, COUNT(*) FROM leases WHERE lease_until > ? GROUP BY owner"
        return await self._store.read(lambda db: {owner: int(n) for owner, n in db.execute(sql, [now])})
