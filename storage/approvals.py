"""ApprovalRepo: the approvals of requests that need several, each a compare-and-set with its audit row.

The request's `approvals` column holds who approved so far. Adding one reads the row, checks it is
still pending and that this person is not already on it, and writes the longer list with its audit
row in one transaction. The write is a compare-and-set on the status AND the list read
(`… WHERE status = 'pending' AND approvals = ?`), read again when another writer changed either
meanwhile: two approvers clicking at once, a double click and an Approve racing a Deny each see
exactly one outcome. On SQLite nothing else writes meanwhile; on PostgreSQL the transaction runs
beside other replicas' writes (storage/concurrent_writes.py) and, like a status change, locks the
request's row before the audit chain's lock. Taking the chain lock first (a serialised write) while
a status change holds the row and waits for that lock would be a deadlock.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence

import sqlite_utils

from core.errors import InvalidTransition, RequestNotFound
from core.models import AccessRequest, AuditEvent, RequestStatus
from core.secrets import SecretRegistry
from storage.audit import AuditWriter
from storage.concurrent_writes import concurrent
from storage.db import Store
from storage.request_rows import FIELDS, row_to_request
from storage.requests import CAS_ATTEMPTS

_SELECT = f"SELECT {', '.join(FIELDS)} FROM requests WHERE id = ?"
_APPROVALS = FIELDS.index("approvals")


class ApprovalRepo:
    """Implements core.policy_ports.ApprovalStore on the requests table."""

    def __init__(self, store: Store, secrets: SecretRegistry | None = None) -> None:
        self._store = store
        self._audit = AuditWriter(SecretRegistry() if secrets is None else secrets)

    async def add(self, request_id: str, approver: str, audit: AuditEvent) -> tuple[AccessRequest, bool]:
        """Append `approver` to a pending request's approvals with its audit row; see the protocol."""

        def apply(db: sqlite_utils.Database) -> tuple[AccessRequest, bool]:
            for _ in range(CAS_ATTEMPTS):
                request, stored = _pending(db, request_id)
                if approver in request.approvals:
                    return request, False
                written = _set_approvals(db, request_id, stored, [*request.approvals, approver])
                if written is not None:
                    self._audit.insert(db, dataclasses.replace(audit, request_id=request_id))
                    return written, True
            raise _changing(db, request_id)

        return await self._store.write(concurrent(apply))

    async def withdraw(self, request_id: str, approvers: Sequence[str], audit: AuditEvent) -> AccessRequest:
        """Remove `approvers` from a pending request's approvals with its audit row; see the protocol."""
        gone = set(approvers)

        def apply(db: sqlite_utils.Database) -> AccessRequest:
            for _ in range(CAS_ATTEMPTS):
                request, stored = _pending(db, request_id)
                written = _set_approvals(db, request_id, stored, [a for a in request.approvals if a not in gone])
                if written is not None:
                    self._audit.insert(db, dataclasses.replace(audit, request_id=request_id))
                    return written
            raise _changing(db, request_id)

        return await self._store.write(concurrent(apply))


def _pending(db: sqlite_utils.Database, request_id: str) -> tuple[AccessRequest, str]:
    """The request and its stored approvals text, read inside the caller's transaction; InvalidTransition
    unless it is pending."""
    row = db.execute(_SELECT, [request_id]).fetchone()
    if row is None:
        raise RequestNotFound(f"no request {request_id}", user_message="This request no longer exists.")
    request = row_to_request(row)
    if request.status is not RequestStatus.PENDING:
        raise InvalidTransition(request_id, request.status.value, "approval")
    return request, row[_APPROVALS]


def _set_approvals(
    db: sqlite_utils.Database, request_id: str, stored: str, approvals: list[str]
) -> AccessRequest | None:
    """Write `approvals` if the request is still pending with the approvals text `stored`; the row as
    written, or None when another writer changed it since it was read."""
    # fetchall: a RETURNING statement must run to completion before anything else on the connection.
    rows = db.execute(
        f"UPDATE requests SET approvals = ? WHERE id = ? AND status = 'pending' AND approvals = ? "
        f"RETURNING {', '.join(FIELDS)}",
        [_encode(approvals), request_id, stored],
    ).fetchall()
    return row_to_request(rows[0]) if rows else None


def _changing(db: sqlite_utils.Database, request_id: str) -> InvalidTransition:
    """What a change that lost every attempt raises (nothing was written): the status found now."""
    row = db.execute("SELECT status FROM requests WHERE id = ?", [request_id]).fetchone()
    return InvalidTransition(request_id, row[0] if row else "missing", "approval")


def _encode(approvals: list[str]) -> str:
    return json.dumps(approvals, ensure_ascii=False, separators=(",", ":"))
