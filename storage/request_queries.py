"""Read-only listings of requests for people (the HTTP API): newest first, filtered, bounded.

Kept apart from `storage.requests.RequestRepo`, whose queries serve the lifecycle (due revocations,
timeouts, recovery); these serve someone looking.
"""

from __future__ import annotations

from collections.abc import Collection

import sqlite_utils

from core.models import AccessRequest, RequestStatus
from storage.db import Store
from storage.request_rows import FIELDS, row_to_request

MAX_SCAN = 5000  # rows read per listing at most, whatever the filters leave


class RequestQueries:
    """Listings of requests by requester and status."""

    def __init__(self, store: Store) -> None:
        self._store = store

    async def recent(
        self,
        *,
        requester: str | None = None,
        statuses: Collection[RequestStatus] = (),
        limit: int = MAX_SCAN,
    ) -> list[AccessRequest]:
        """Up to `limit` requests (at most MAX_SCAN), newest first, of `requester` and in `statuses` when given."""
        where: list[str] = []
        params: list[str | int] = []
        if requester is not None:
            where.append("requester = ?")
            params.append(requester)
        if statuses:
            where.append(f"status IN ({', '.join('?' for _ in statuses)})")
            params.extend(RequestStatus(s).value for s in statuses)
        sql = f"SELECT {', '.join(FIELDS)} FROM requests"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY created_at DESC, id DESC LIMIT ?"
        params.append(min(max(limit, 0), MAX_SCAN))

        def query(db: sqlite_utils.Database) -> list[AccessRequest]:
            return [row_to_request(row) for row in db.execute(sql, params).fetchall()]

        return await self._store.read(query)
