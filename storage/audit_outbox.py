"""Reading the audit trail as documented events, and the delivery cursors of its destinations.

The trail is the outbox: an audit row commits in the same transaction as the change it records
(storage.audit), and each destination's cursor (`audit_cursors`, one row per destination) is the
seq of the last event it acknowledged. Delivering is reading the rows after the cursor, in seq
order, and moving the cursor only once the destination has them; a crash in between re-sends the
same events (same `event_id`), never skips one.

Reads are in pages by seq (keyset), each its own short read on the store thread, so export and
verify walk any number of events in bounded memory.
"""

from __future__ import annotations

import functools
import json
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlite_utils

from core.audit_events import ChainHead, StoredEvent, read_detail
from core.ports import DestinationStatus
from storage.db import Store, from_db_time, to_db_time

PAGE = 1000
EVENT_COLUMNS = (  # the columns row_to_stored reads, in its order
    "id, event_id, type, action, at, actor, actor_email, actor_name, via, request_id, flow, target, "
    "status_from, status_to, reason, fields, detail, prev_hash, hash"
)


def row_to_stored(row: Sequence[Any]) -> StoredEvent:
    """A StoredEvent from a row selected with this module's column list."""
    (seq, event_id, type_, action, at, actor, email, name, via, request_id, flow, target) = row[:12]
    status_from, status_to, reason, fields, detail, prev_hash, digest = row[12:]
    parsed_fields = None
    if fields is not None:
        try:
            parsed_fields = json.loads(fields)
        except ValueError:
            parsed_fields = {"unreadable_fields": fields}
    return StoredEvent(
        seq=seq,
        event_id=event_id or "",
        type=type_ or "",
        action=action,
        at=at,
        actor=actor,
        actor_email=email,
        actor_name=name,
        via=via or "",
        request_id=request_id,
        flow=flow,
        target=target,
        status_from=status_from,
        status_to=status_to,
        reason=reason,
        fields=parsed_fields,
        detail=read_detail(detail),
        prev_hash=prev_hash or "",
        hash=digest or "",
    )


@dataclass(frozen=True)
class ExportFilter:
    """Which events an export takes: `since` ≤ at < `until`, and one flow when given."""

    since: datetime | None = None
    until: datetime | None = None
    flow: str | None = None


class AuditReader:
    """Reads the trail as StoredEvents, a page at a time."""

    def __init__(self, store: Store) -> None:
        self._store = store

    async def after(self, seq: int, limit: int) -> list[StoredEvent]:
        """Up to `limit` events with seq > `seq`, oldest first."""

        def query(db: sqlite_utils.Database) -> list[StoredEvent]:
            rows = db.execute(
                f"SELECT {EVENT_COLUMNS} FROM audit_events WHERE id > ? ORDER BY id LIMIT ?", [seq, limit]
            )
            return [row_to_stored(r) for r in rows.fetchall()]

        return await self._store.read(query)

    async def head(self) -> ChainHead:
        """The newest event's seq and hash (seq 0 and the genesis hash for an empty trail)."""
        return await self._store.read(head_of)

    async def by_seq(self, seqs: Sequence[int]) -> dict[int, StoredEvent]:
        """The events with these seqs that exist."""

        def query(db: sqlite_utils.Database) -> dict[int, StoredEvent]:
            found: dict[int, StoredEvent] = {}
            for start in range(0, len(seqs), 500):
                chunk = list(seqs[start : start + 500])
                marks = ", ".join("?" * len(chunk))
                for row in db.execute(f"SELECT {EVENT_COLUMNS} FROM audit_events WHERE id IN ({marks})", chunk):
                    found[row[0]] = row_to_stored(row)
            return found

        return await self._store.read(query)

    async def pages(self, selection: ExportFilter | None = None, page: int = PAGE) -> AsyncIterator[list[StoredEvent]]:
        """Every event (or those `selection` takes), oldest first, `page` at a time."""
        where, params = ["id > ?"], list[Any]()
        if selection is not None:
            if selection.since is not None:
                where.append("at >= ?")
                params.append(to_db_time(selection.since))
            if selection.until is not None:
                where.append("at < ?")
                params.append(to_db_time(selection.until))
            if selection.flow is not None:
                where.append("flow = ?")
                params.append(selection.flow)
        sql = f"SELECT {EVENT_COLUMNS} FROM audit_events WHERE {' AND '.join(where)} ORDER BY id LIMIT ?"
        last = 0

        def query(db: sqlite_utils.Database, args: list[Any]) -> list[StoredEvent]:
            return [row_to_stored(r) for r in db.execute(sql, args).fetchall()]

        while True:
            args: list[Any] = [last, *params, page]
            rows = await self._store.read(functools.partial(query, args=args))
            if not rows:
                return
            yield rows
            last = rows[-1].seq


def head_of(db: sqlite_utils.Database) -> ChainHead:
    """The chain head of an open database (for use on the store thread)."""
    row = db.execute("SELECT id, hash, event_id FROM audit_events ORDER BY id DESC LIMIT 1").fetchone()
    return ChainHead(0, None) if row is None else ChainHead(row[0], row[1], row[2])


class AuditCursors:
    """The outbox as the delivery workers use it (core.ports.AuditOutbox): the trail's events after a
    cursor, and each destination's cursor, failures, last error and alert state."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._reader = AuditReader(store)

    async def after(self, seq: int, limit: int) -> list[StoredEvent]:
        """Up to `limit` events after `seq`, oldest first."""
        return await self._reader.after(seq, limit)

    async def head(self) -> ChainHead:
        """The newest event's seq and hash."""
        return await self._reader.head()

    async def ensure(self, names: Sequence[str], now: datetime) -> None:
        """Create a cursor at the start of the trail for each destination that has none."""
        at = to_db_time(now)
        await self._store.write(
            lambda db: db.conn.executemany(
                "INSERT INTO audit_cursors (destination, first_seen_at) VALUES (?, ?) ON CONFLICT DO NOTHING",
                [(name, at) for name in names],
            )
        )

    async def position(self, name: str) -> int:
        """The seq of the last event `name` acknowledged."""

        def query(db: sqlite_utils.Database) -> int:
            row = db.execute("SELECT position FROM audit_cursors WHERE destination = ?", [name]).fetchone()
            return 0 if row is None else int(row[0])

        return await self._store.read(query)

    async def advance(self, name: str, seq: int, now: datetime) -> None:
        """`name` has every event up to `seq`: move its cursor (never backwards) and clear its failures."""
        at = to_db_time(now)

        def write(db: sqlite_utils.Database) -> None:
            db.execute(
                "UPDATE audit_cursors SET position = MAX(position, ?), delivered_at = ?, failures = 0 "
                "WHERE destination = ?",
                [seq, at, name],
            )
            # Caught up: the next lag is a new episode, alerted again.
            db.execute(
                "UPDATE audit_cursors SET alerted_at = NULL WHERE destination = ? AND position >= "
                "(SELECT COALESCE(MAX(id), 0) FROM audit_events)",
                [name],
            )

        await self._store.write(write)

    async def failed(self, name: str, error: str, now: datetime) -> int:
        """Record a failed delivery (the error already scrubbed); return the failures in a row."""

        def write(db: sqlite_utils.Database) -> int:
            db.execute(
                "UPDATE audit_cursors SET failures = failures + 1, last_error = ?, last_error_at = ? "
                "WHERE destination = ?",
                [error[:1000], to_db_time(now), name],
            )
            row = db.execute("SELECT failures FROM audit_cursors WHERE destination = ?", [name]).fetchone()
            return 0 if row is None else int(row[0])

        return await self._store.write(write)

    async def alerted(self, name: str, now: datetime) -> None:
        """Remember that the lag of `name` was alerted, so it is alerted once per episode."""
        await self._store.write(
            lambda db: db.execute(
                "UPDATE audit_cursors SET alerted_at = ? WHERE destination = ?", [to_db_time(now), name]
            )
        )

    async def status(self, names: Sequence[str] | None = None) -> list[DestinationStatus]:
        """Each destination's cursor, backlog and last error (all cursors when `names` is None)."""

        def query(db: sqlite_utils.Database) -> list[DestinationStatus]:
            head = head_of(db).seq
            rows = db.execute(
                "SELECT destination, position, first_seen_at, delivered_at, failures, last_error, last_error_at, "
                "alerted_at FROM audit_cursors ORDER BY destination COLLATE BINARY"
            ).fetchall()
            by_name = {row[0]: row for row in rows}
            wanted = list(by_name) if names is None else list(names)
            result = []
            for name in wanted:
                row = by_name.get(name)
                position = int(row[1]) if row else 0
                oldest = db.execute(
                    "SELECT at FROM audit_events WHERE id > ? ORDER BY id LIMIT 1", [position]
                ).fetchone()
                result.append(
                    DestinationStatus(
                        name=name,
                        position=position,
                        head=head,
                        backlog=max(0, head - position),
                        oldest_undelivered_at=from_db_time(oldest[0]) if oldest else None,
                        first_seen_at=from_db_time(row[2]) if row else None,
                        delivered_at=from_db_time(row[3]) if row and row[3] else None,
                        failures=int(row[4]) if row else 0,
                        last_error=row[5] if row else None,
                        last_error_at=from_db_time(row[6]) if row and row[6] else None,
                        alerted_at=from_db_time(row[7]) if row and row[7] else None,
                    )
                )
            return result

        return await self._store.read(query)

    async def backlog(self) -> dict[str, int]:
        """Events not yet delivered, per destination (for metrics)."""
        return {s.name: s.backlog for s in await self.status()}
