"""The append-only audit trail: who did what to which request, when and why.

`insert_audit` is the one place an audit row is written, so other repositories call it inside their
own transaction (a transition and its audit row commit together). It scrubs every registered secret
from the detail first: a secret that escaped its `Secret` wrapper still never reaches the trail.
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
from core.secrets import scrub, scrub_data
from storage.db import Store, from_db_time, to_db_time

_COLUMNS = "id, at, request_id, actor, action, status_from, status_to, detail"


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return to_db_time(value)
    if isinstance(value, Enum):
        return value.value
    # Anything else becomes text; scrub it, since an object's str() may embed a secret.
    return scrub(str(value))


# Built once: json.dumps with options constructs a new encoder per call, which bulk writes feel.
_to_json = json.JSONEncoder(default=_json_default, ensure_ascii=False, separators=(",", ":")).encode


def encode_detail(detail: Mapping[str, Any]) -> str:
    """Serialise an audit detail as JSON with every registered secret value replaced by '***'."""
    if not detail:
        return "{}"
    return _to_json(scrub_data(plain(detail)))


_INSERT = (
    "INSERT INTO audit_events (at, request_id, actor, action, status_from, status_to, detail) "
    "VALUES (?, ?, ?, ?, ?, ?, ?)"
)


def _audit_params(event: AuditEvent) -> list[Any]:
    return [
        to_db_time(event.at),
        event.request_id,
        None if event.actor is None else scrub(event.actor),
        event.action,
        _status_text(event.status_from),
        _status_text(event.status_to),
        encode_detail(event.detail),
    ]


def insert_audit(db: sqlite_utils.Database, event: AuditEvent) -> int:
    """Write one audit row on the store thread (inside the caller's transaction); return its id."""
    row_id = db.conn.execute(_INSERT, _audit_params(event)).lastrowid
    if row_id is None:  # sqlite3 sets it after every INSERT
        raise RuntimeError("the audit row was not inserted")
    return row_id


def insert_audits(db: sqlite_utils.Database, events: Iterable[AuditEvent]) -> None:
    """Write many audit rows with one prepared statement (bulk paths)."""
    db.conn.executemany(_INSERT, (_audit_params(e) for e in events))


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

    def __init__(self, store: Store) -> None:
        self._store = store

    async def append(self, event: AuditEvent) -> int:
        """Append one event in its own transaction; return its row id."""
        return await self._store.write(lambda db: insert_audit(db, event))

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
