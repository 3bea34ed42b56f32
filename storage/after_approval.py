"""What the life of access after approval asks of the requests table (a mixin of RequestRepo).

Several compare-and-sets in one transaction (an extension takes over a live grant: both rows move
together or neither does), the warnings that are due, and one person's requests for App Home and
`/sym list`, newest first and bounded, with their total counts.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, NamedTuple

import sqlite_utils

from core.models import AccessRequest, RequestStatus, TransitionStep
from storage.concurrent_writes import concurrent
from storage.db import from_db_time, to_db_time
from storage.request_rows import FIELDS, Encoders, row_to_request

if TYPE_CHECKING:
    from storage.audit import AuditWriter
    from storage.db import Store


class Page(NamedTuple):
    """The newest requests of a query (at most the limit asked for) and how many there are in all."""

    items: list[AccessRequest]
    total: int


class AfterApprovalQueries:
    """Queries and multi-row transitions for revoke now, cancel, extend, warnings and App Home."""

    _store: Store
    _encoders: Encoders
    _audit: AuditWriter

    async def transition_all(self, steps: Sequence[TransitionStep]) -> list[AccessRequest]:
        """Apply every step in ONE transaction, in order; the first that loses raises InvalidTransition
        and nothing at all is written."""
        from storage.requests import apply_transitions, prepare_transition

        prepared = [
            (prepare_transition(s.request_id, s.expected, s.new, s.changes, self._encoders), s.audit) for s in steps
        ]

        return await self._store.write(concurrent(lambda db: apply_transitions(db, prepared, self._audit)))

    async def list_due_warnings(self, now: datetime) -> list[AccessRequest]:
        """Granted requests whose end-of-access warning is due (warn_at at or before `now`)."""
        return await self._rows(
            "WHERE status = 'granted' AND warn_at IS NOT NULL AND warn_at <= ? ORDER BY warn_at, id", [to_db_time(now)]
        )

    async def list_warn_schedule(self, until: datetime) -> list[tuple[str, datetime]]:
        """(id, warn_at) of granted requests whose warning falls at or before `until` (the timer window)."""

        def query(db: sqlite_utils.Database) -> list[tuple[str, datetime]]:
            rows = db.execute(
                "SELECT id, warn_at FROM requests WHERE status = 'granted' AND warn_at IS NOT NULL AND warn_at <= ? "
                "ORDER BY warn_at, id",
                [to_db_time(until)],
            ).fetchall()
            return [(i, from_db_time(w)) for i, w in rows]

        return await self._store.read(query)

    async def page_for_requester(self, requester: str, statuses: Sequence[RequestStatus], limit: int) -> Page:
        """One person's requests in `statuses`, newest first (at most `limit`), and how many in all."""
        values = [RequestStatus(s).value for s in statuses]
        where = f"WHERE requester = ? AND status IN ({', '.join('?' * len(values))})"
        return await self._page(where, [requester, *values], limit)

    async def page_pending(self, limit: int, *, exclude_requester: str) -> Page:
        """Pending requests that someone other than `exclude_requester` made, newest first."""
        return await self._page("WHERE status = 'pending' AND requester <> ?", [exclude_requester], limit)

    async def _page(self, where: str, params: list[Any], limit: int) -> Page:
        def query(db: sqlite_utils.Database) -> Page:
            total = db.execute(f"SELECT COUNT(*) FROM requests {where}", params).fetchone()[0]
            rows = db.execute(
                f"SELECT {', '.join(FIELDS)} FROM requests {where} ORDER BY created_at DESC, id DESC LIMIT ?",
                [*params, limit],
            ).fetchall()
            return Page([row_to_request(r) for r in rows], total)

        return await self._store.read(query)

    async def _rows(self, where: str, params: list[Any]) -> list[AccessRequest]:
        sql = f"SELECT {', '.join(FIELDS)} FROM requests {where}"
        return await self._store.read(lambda db: [row_to_request(r) for r in db.execute(sql, params).fetchall()])
