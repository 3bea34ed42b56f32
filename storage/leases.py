"""LeaseRepo: the `leases` table, where replicas record which of them acts on what, until when.

A lease is a row (name, owner, lease_until). Taking one is a single upsert that only overwrites a
row that is ours already or has expired, so two replicas can never both hold a name: every write
transaction is serialised (SQLite's single writer; PostgreSQL's write lock, see storage/postgres.py).
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

from storage.db import Store, to_db_time

_CLAIM = (
    "INSERT INTO leases (name, owner, lease_until) VALUES (?, ?, ?) "
    "ON CONFLICT (name) DO UPDATE SET owner = excluded.owner, lease_until = excluded.lease_until "
    "WHERE leases.owner = excluded.owner OR leases.lease_until <= ?"
)


_CHUNK = 500  # names per statement: far below either engine's limit on parameters


def process_owner() -> str:
    """A name for this process in the leases table: host, pid and a random part (pids are reused)."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def _placeholders(names: Collection[str]) -> str:
    return ", ".join("?" * len(names))


class LeaseRepo:
    """Takes, renews, releases and inspects leases for one owner (this process)."""

    def __init__(self, store: Store, owner: str | None = None, *, wall: Callable[[], datetime] | None = None) -> None:
        self._store = store
        self.owner = owner or process_owner()
        self._wall = wall or (lambda: datetime.now(UTC))

    async def claim(self, names: Collection[str], ttl: float) -> set[str]:
        """Take every free, expired or already-ours lease of `names` for `ttl` seconds; return those now ours."""
        names = list(dict.fromkeys(names))
        if not names:
            return set()
        now = self._wall()
        until, now_text = to_db_time(now + timedelta(seconds=ttl)), to_db_time(now)

        def apply(db: sqlite_utils.Database) -> set[str]:
            db.conn.executemany(_CLAIM, [(name, self.owner, until, now_text) for name in names])
            rows = db.execute(
                f"SELECT name FROM leases WHERE owner = ? AND name IN ({_placeholders(names)})", [self.owner, *names]
            ).fetchall()
            return {row[0] for row in rows}

        return await self._store.write(apply)

    async def renew(self, names: Collection[str], ttl: float) -> set[str]:
        """Extend our leases of `names` by `ttl` seconds from now; return those still ours."""
        names = list(dict.fromkeys(names))
        if not names:
            return set()
        until = to_db_time(self._wall() + timedelta(seconds=ttl))

        def apply(db: sqlite_utils.Database) -> set[str]:
            where = f"owner = ? AND name IN ({_placeholders(names)})"
            db.execute(f"UPDATE leases SET lease_until = ? WHERE {where}", [until, self.owner, *names])
            return {row[0] for row in db.execute(f"SELECT name FROM leases WHERE {where}", [self.owner, *names])}

        return await self._store.write(apply)

    async def release(self, names: Collection[str]) -> None:
        """Give up our leases of `names` (another owner's are left alone)."""
        names = list(dict.fromkeys(names))
        if not names:
            return
        await self._store.write(
            lambda db: db.execute(
                f"DELETE FROM leases WHERE owner = ? AND name IN ({_placeholders(names)})", [self.owner, *names]
            )
        )

    async def held_elsewhere(self, names: Collection[str]) -> set[str]:
        """Those of `names` leased, unexpired, by another owner."""
        names = list(dict.fromkeys(names))
        now = to_db_time(self._wall())

        def query(db: sqlite_utils.Database) -> set[str]:
            held: set[str] = set()
            for start in range(0, len(names), _CHUNK):  # a sweep may ask about thousands of rows
                chunk = names[start : start + _CHUNK]
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
