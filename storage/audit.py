"""The append-only audit trail: who did what to which request, when and why.

`AuditWriter.insert` is the one place an audit row is written, so other repositories call it inside
their own transaction (a transition and its audit row commit together). It scrubs every secret of the
runtime's registry from the row first: a secret that escaped its `Secret` wrapper still never reaches the trail.
It also makes the row the documented event (docs/audit.md): a UUIDv7 `event_id`, the next `seq`, the
type mapped from the action, `via`, the flow and target (read from the request when not given), the
reason and fields, and `prev_hash` / `hash` chaining it to the newest row. Nothing in that derivation
can refuse a row: an unknown action is type `other`, and every value has a canonical form.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from typing import Any

import sqlite_utils

from core.audit_events import GENESIS_HASH, StoredEvent, event_type, json_safe, new_event_id, via_for
from core.models import AuditEvent
from core.plain import plain
from core.secrets import SecretRegistry
from storage.concurrent_writes import concurrent, lock_audit_chain
from storage.db import Store, dialect, from_db_time, to_db_time

_COLUMNS = "id, at, request_id, actor, action, status_from, status_to, detail"


class AuditWriter:
    """Writes audit rows with every value in `secrets` (the runtime's registry) scrubbed first."""

    def __init__(self, secrets: SecretRegistry) -> None:
        self.secrets = secrets
        # Built once: json.dumps with options constructs a new encoder per call, which bulk writes feel.
        self._to_json = json.JSONEncoder(default=self._json_default, ensure_ascii=False, separators=(",", ":")).encode

    def _json_default(self, value: Any) -> Any:
        if isinstance(value, datetime):
            return to_db_time(value)
        if isinstance(value, Enum):
            return value.value
        # Anything else becomes text; scrub it, since an object's str() may embed a secret.
        return self.secrets.scrub(str(value))

    def encode_detail(self, detail: Mapping[str, Any]) -> str:
        """Serialise an audit detail as JSON with every registered secret value replaced by '***'."""
        if not detail:
            return "{}"
        return self._to_json(json_safe(self.secrets.scrub_data(plain(detail))))

    def _params(self, event: AuditEvent, head: _Head, request: _RequestFacts | None) -> list[Any]:
        """The stored values of `event`, derived and chained after `head` (which it then advances)."""
        at = to_db_time(event.at)
        # None stays None: the NOT NULL column refuses the row, and the caller's transaction with it.
        actor = self.secrets.scrub(event.actor) if event.actor is not None else None
        detail_text = self.encode_detail(event.detail)
        detail = json.loads(detail_text)  # hashed exactly as stored: what verify will read back
        fields = detail.get("fields") if isinstance(detail.get("fields"), dict) else None
        if fields is None and request is not None and event.action == "request.created":
            fields = request.fields
        flow = event.flow or (request.flow if request else None)
        target = event.target or (request.target if request else None)
        actor_email = event.actor_email
        if actor_email is None and request is not None and actor == request.requester:
            actor_email = request.requester_email
        reason = _text(event.reason) or _text(detail.get("reason")) or _text((fields or {}).get("reason"))
        stored = StoredEvent(
            seq=head.seq + 1,
            event_id=new_event_id(),
            type=event_type(event.action),
            action=event.action,
            at=at,
            actor=actor,
            actor_email=self._scrubbed(actor_email),
            actor_name=self._scrubbed(event.actor_name),
            via=via_for(event.actor, event.via or _text(detail.get("via"))),
            request_id=event.request_id,
            flow=flow,
            target=target,
            status_from=_status_text(event.status_from),
            status_to=_status_text(event.status_to),
            reason=self._scrubbed(reason),
            fields=None if fields is None else json_safe(self.secrets.scrub_data(fields)),
            detail=detail,
            prev_hash=head.hash,
            hash="",
        )
        digest = stored.computed_hash()
        head.seq, head.hash = stored.seq, digest
        return [
            stored.seq,
            at,
            stored.request_id,
            actor,
            stored.action,
            stored.status_from,
            stored.status_to,
            detail_text,
            stored.event_id,
            stored.type,
            stored.via,
            stored.flow,
            stored.target,
            stored.actor_email,
            stored.actor_name,
            stored.reason,
            None if stored.fields is None else self._to_json(stored.fields),
            stored.prev_hash,
            digest,
        ]

    def _scrubbed(self, text: str | None) -> str | None:
        return None if text is None else self.secrets.scrub(text)

    def insert(self, db: sqlite_utils.Database, event: AuditEvent) -> int:
        """Write one audit row on the store thread (inside the caller's transaction); return its seq.

        The row is chained to the newest one, read inside the same transaction after taking the lock
        that orders the chain (storage/concurrent_writes.py): every writer (the bot's replicas, the
        command line beside them) holds it, or SQLite's write lock, from that read until COMMIT.
        """
        request = _request_facts(db, event)  # read before the lock: the lock is held as briefly as it can be
        lock_audit_chain(db)
        head = _head(db)
        db.conn.execute(_INSERT, self._params(event, head, request))
        return head.seq

    def insert_many(self, db: sqlite_utils.Database, events: Iterable[AuditEvent]) -> None:
        """Write many audit rows with one prepared statement (bulk paths: the chain lock is taken first)."""
        lock_audit_chain(db)
        head = _head(db)
        db.conn.executemany(_INSERT, (self._params(e, head, _request_facts(db, e)) for e in events))


_STORED_COLUMNS = (
    "id, at, request_id, actor, action, status_from, status_to, detail, event_id, type, via, flow, target, "
    "actor_email, actor_name, reason, fields, prev_hash, hash"
)
_INSERT = f"INSERT INTO audit_events ({_STORED_COLUMNS}) VALUES ({', '.join('?' * len(_STORED_COLUMNS.split(',')))})"


@dataclass
class _Head:
    """The newest row's seq and hash while a transaction writes after it."""

    seq: int
    hash: str


@dataclass(frozen=True)
class _RequestFacts:
    flow: str
    target: str
    requester: str
    requester_email: str | None
    fields: dict[str, Any]


def _head(db: sqlite_utils.Database) -> _Head:
    row = db.conn.execute("SELECT id, hash FROM audit_events ORDER BY id DESC LIMIT 1").fetchone()
    if dialect(db) == "postgresql":
        # Rows can be neither deleted nor changed (triggers), and every audit row is written under the
        # chain lock, committed before it is released, so the newest row's id is the highest ever assigned.
        return _Head(row[0] if row else 0, (row[1] if row else None) or GENESIS_HASH)
    # AUTOINCREMENT never reuses a number, so the next seq follows the highest ever assigned.
    used = db.conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'audit_events'").fetchone()
    seq = max(row[0] if row else 0, used[0] if used else 0)
    return _Head(seq, (row[1] if row else None) or GENESIS_HASH)


def _request_facts(db: sqlite_utils.Database, event: AuditEvent) -> _RequestFacts | None:
    if event.request_id is None or (event.flow and event.target and event.action != "request.created"):
        return None
    row = db.conn.execute(
        "SELECT flow, target, requester, requester_email, fields FROM requests WHERE id = ?", [event.request_id]
    ).fetchone()
    if row is None:
        return None
    try:
        fields = json.loads(row[4]) if row[4] else {}
    except ValueError:
        fields = {}
    return _RequestFacts(row[0], row[1], row[2], row[3], fields if isinstance(fields, dict) else {})


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _status_text(status: Any) -> str | None:
    return None if status is None else str(status.value if isinstance(status, Enum) else status)


def row_to_event(row: tuple[Any, ...]) -> AuditEvent:
    """Build an AuditEvent from a row selected with the audit column list."""
    _id, at, request_id, actor, action, status_from, status_to, detail = row
    return AuditEvent(
        at=from_db_time(at),
        actor=actor,
        action=action,
        request_id=request_id,
        status_from=status_from,
        status_to=status_to,
        detail=json.loads(detail),
    )


class AuditLog:
    """Appends to and reads the audit trail."""

    def __init__(self, store: Store, secrets: SecretRegistry | None = None) -> None:
        self._store = store
        self._writer = AuditWriter(SecretRegistry() if secrets is None else secrets)

    async def append(self, event: AuditEvent) -> int:
        """Append one event in its own transaction; return its seq (row id)."""
        return await self._store.write(concurrent(lambda db: self._writer.insert(db, event)))

    async def for_request(self, request_id: str) -> list[AuditEvent]:
        """Every event about one request, oldest first."""

        def query(db: sqlite_utils.Database) -> list[AuditEvent]:
            rows = db.execute(
                f"SELECT {_COLUMNS} FROM audit_events WHERE request_id = ? ORDER BY id", [request_id]
            ).fetchall()
            return [row_to_event(r) for r in rows]

        return await self._store.read(query)

    async def list(self, since: datetime | None = None, limit: int = 1000) -> list[AuditEvent]:
        """Events at or after `since` (all when None), oldest first, at most `limit` of them."""
        if limit <= 0:
            raise ValueError("limit must be positive")
        since_text = None if since is None else to_db_time(since)

        def query(db: sqlite_utils.Database) -> list[AuditEvent]:
            params: list[str | int]
            if since_text is None:
                sql, params = f"SELECT {_COLUMNS} FROM audit_events ORDER BY id LIMIT ?", [limit]
            else:
                sql = f"SELECT {_COLUMNS} FROM audit_events WHERE at >= ? ORDER BY id LIMIT ?"
                params = [since_text, limit]
            return [row_to_event(r) for r in db.execute(sql, params).fetchall()]

        return await self._store.read(query)

    async def latest(self, action: str) -> AuditEvent | None:
        """The newest event with this action, or None."""

        def query(db: sqlite_utils.Database) -> AuditEvent | None:
            row = db.execute(
                f"SELECT {_COLUMNS} FROM audit_events WHERE action = ? ORDER BY id DESC LIMIT 1", [action]
            ).fetchone()
            return None if row is None else row_to_event(row)

        return await self._store.read(query)
