"""The append-only audit trail: who did what to which request, when and why.

`AuditWriter.insert` is the one place an audit row is written, so other repositories call it inside
their own transaction (a transition and its audit row commit together). It scrubs every secret of the
runtime's registry from the row first: a secret that escaped its `Secret` wrapper still never reaches the trail.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from datetime import datetime
from enum import Enum
from typing import Any

import sqlite_utils

from core.models import AuditEvent
from core.plain import plain
from core.secrets import SecretRegistry
from storage.db import Store, from_db_time, to_db_time

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
        return self._to_json(self.secrets.scrub_data(plain(detail)))

    def _params(self, event: AuditEvent) -> list[Any]:
        return [
            to_db_time(event.at),
            event.request_id,
            None if event.actor is None else self.secrets.scrub(event.actor),
            event.action,
            _status_text(event.status_from),
            _status_text(event.status_to),
            self.encode_detail(event.detail),
        ]

    def insert(self, db: sqlite_utils.Database, event: AuditEvent) -> int:
        """Write one audit row on the store thread (inside the caller's transaction); return its id."""
        row_id = db.conn.execute(_INSERT, self._params(event)).lastrowid
        if row_id is None:  # sqlite3 sets it after every INSERT
            raise RuntimeError("the audit row was not inserted")
        return row_id

    def insert_many(self, db: sqlite_utils.Database, events: Iterable[AuditEvent]) -> None:
        """Write many audit rows with one prepared statement (bulk paths)."""
        db.conn.executemany(_INSERT, (self._params(e) for e in events))


_INSERT = (
    "INSERT INTO audit_events (at, request_id, actor, action, status_from, status_to, detail) "
    "VALUES (?, ?, ?, ?, ?, ?, ?)"
)


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
        """Append one event in its own transaction; return its row id."""
        return await self._store.write(lambda db: self._writer.insert(db, event))

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
