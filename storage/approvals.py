"""ApprovalRepo: the approvals of requests that need several, each a compare-and-set with its audit row.

The request's `approvals` column holds who approved so far. Adding one reads the row, checks it is
still pending and that this person is not already on it, and writes the longer list with its audit
row, all in one `BEGIN IMMEDIATE` transaction: two approvers clicking at once, a double click and an
Approve racing a Deny each see exactly one outcome.
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
from storage.db import Store
from storage.requests import FIELDS, row_to_request

_SELECT = f"SELECT {', '.join(FIELDS)} FROM requests WHERE id = ?"


class ApprovalRepo:
    """Implements core.policy_ports.ApprovalStore on the requests table."""

    def __init__(self, store: Store, secrets: SecretRegistry | None = None) -> None:
        self._store = store
        self._audit = AuditWriter(SecretRegistry() if secrets is None else secrets)

    async def add(self, request_id: str, approver: str, audit: AuditEvent) -> tuple[AccessRequest, bool]:
        """Append `approver` to a pending request's approvals with its audit row; see the protocol."""

        def apply(db: sqlite_utils.Database) -> tuple[AccessRequest, bool]:
            request = _pending(db, request_id)
            if approver in request.approvals:
                return request, False
            approvals = [*request.approvals, approver]
            db.execute(
                "UPDATE requests SET approvals = ? WHERE id = ? AND status = 'pending'",
                [_encode(approvals), request_id],
            )
            self._audit.insert(db, dataclasses.replace(audit, request_id=request_id))
            return dataclasses.replace(request, approvals=tuple(approvals)), True

        return await self._store.write(apply)

    async def withdraw(self, request_id: str, approvers: Sequence[str], audit: AuditEvent) -> AccessRequest:
        """Remove `approvers` from a pending request's approvals with its audit row; see the protocol."""
        gone = set(approvers)

        def apply(db: sqlite_utils.Database) -> AccessRequest:
            request = _pending(db, request_id)
            kept = [a for a in request.approvals if a not in gone]
            db.execute(
                "UPDATE requests SET approvals = ? WHERE id = ? AND status = 'pending'", [_encode(kept), request_id]
            )
            self._audit.insert(db, dataclasses.replace(audit, request_id=request_id))
            return dataclasses.replace(request, approvals=tuple(kept))

        return await self._store.write(apply)


def _pending(db: sqlite_utils.Database, request_id: str) -> AccessRequest:
    """The request, read inside the caller's transaction; InvalidTransition unless it is pending."""
    row = db.execute(_SELECT, [request_id]).fetchone()
    if row is None:
        raise RequestNotFound(f"no request {request_id}", user_message="This request no longer exists.")
    request = row_to_request(row)
    if request.status is not RequestStatus.PENDING:
        raise InvalidTransition(request_id, request.status.value, "approval")
    return request


def _encode(approvals: list[str]) -> str:
    return json.dumps(approvals, ensure_ascii=False, separators=(",", ":"))
