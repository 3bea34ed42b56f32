"""Counts for the /metrics endpoint, read from the database (the truth, whatever this process saw)."""

from __future__ import annotations

import sqlite_utils

from storage.db import Store

OPEN_COUNTS = (
    "SELECT flow, status, COUNT(*) FROM requests WHERE status IN ('pending', 'approved', 'granted') "
    "GROUP BY flow, status"
)


async def request_counts(store: Store) -> list[tuple[str, str, int]]:
    """(flow, status, count) of the open requests (pending, approved, granted): a range of the status
    index each, so a scrape costs the same with a million closed requests."""

    def count(db: sqlite_utils.Database) -> list[tuple[str, str, int]]:
        rows = db.execute(OPEN_COUNTS).fetchall()
        return [(str(flow), str(status), int(n)) for flow, status, n in rows]

    return await store.read(count)
