"""ReminderRepo: what was already reminded for each pending request (table request_reminders).

The schedule itself is not stored: reminder k of a request is due `k × every` after it was made, and
its escalation `escalate_after` after it was made. What is stored is how far the posting got, claimed
before each post in one transaction with its audit row and only while the request is still pending:
a restart neither repeats a reminder nor posts one for a decided request.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import sqlite_utils

from core.models import AuditEvent
from core.policy_ports import ReminderState
from core.secrets import SecretRegistry
from storage.audit import AuditWriter
from storage.db import Store, from_db_time, optional_db_time

_STATE = (
    "SELECT r.id, r.flow, r.created_at, r.message_ts, COALESCE(m.sent, 0), m.escalated_at "
    "FROM requests r LEFT JOIN request_reminders m ON m.request_id = r.id WHERE r.status = 'pending'"
)


def _state(row: tuple[Any, ...]) -> ReminderState:
    request_id, flow, created_at, message_ts, sent, escalated_at = row
    return ReminderState(
        request_id=request_id,
        flow=flow,
        created_at=from_db_time(created_at),
        message_ts=message_ts,
        sent=sent,
        escalated_at=None if escalated_at is None else from_db_time(escalated_at),
    )


class ReminderRepo:
    """Implements core.policy_ports.ReminderStore."""

    def __init__(self, store: Store, secrets: SecretRegistry | None = None) -> None:
        self._store = store
        self._audit = AuditWriter(SecretRegistry() if secrets is None else secrets)

    async def pending(self, flows: Sequence[str]) -> list[ReminderState]:
        """The reminder state of every pending request of `flows`, oldest first."""
        if not flows:
            return []
        names = sorted(set(flows))
        sql = f"{_STATE} AND r.flow IN ({', '.join('?' * len(names))}) ORDER BY r.created_at, r.id"
        return await self._store.read(lambda db: [_state(row) for row in db.execute(sql, names).fetchall()])

    async def get(self, request_id: str) -> ReminderState | None:
        """The reminder state of one request; None when it is not pending."""

        def query(db: sqlite_utils.Database) -> ReminderState | None:
            row = db.execute(f"{_STATE} AND r.id = ?", [request_id]).fetchone()
            return None if row is None else _state(row)

        return await self._store.read(query)

    async def claim(self, request_id: str, sent: int, escalate: bool, audit: AuditEvent) -> bool:
        """Claim reminder number `sent` (and the escalation) with its audit row; see the protocol."""
        at = optional_db_time(audit.at)

        def apply(db: sqlite_utils.Database) -> bool:
            status = db.execute("SELECT status FROM requests WHERE id = ?", [request_id]).fetchone()
            if status is None or status[0] != "pending":
                return False
            row = db.execute(
                "SELECT sent, escalated_at FROM request_reminders WHERE request_id = ?", [request_id]
            ).fetchone()
            done, escalated = (row[0], row[1]) if row else (0, None)
            if sent <= done and not (escalate and escalated is None):
                return False  # already posted (or a later one was): nothing to claim
            db.execute(
                "INSERT INTO request_reminders (request_id, sent, last_at, escalated_at) VALUES (?, ?, ?, ?) "
                # Columns of the row already there are qualified: PostgreSQL finds a bare name ambiguous.
                "ON CONFLICT (request_id) DO UPDATE SET sent = MAX(request_reminders.sent, excluded.sent), "
                "last_at = excluded.last_at, "
                "escalated_at = COALESCE(request_reminders.escalated_at, excluded.escalated_at)",
                [request_id, max(sent, done), at, at if escalate else None],
            )
            self._audit.insert(db, dataclasses.replace(audit, request_id=request_id))
            return True

        return await self._store.write(apply)
