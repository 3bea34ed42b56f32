"""The grants of a period, read out of the requests table for the access review (core.access_review).

Everything here is a generator over one cursor, run on the store's thread (`Store.read`), so a year
of grants streams through in bounded memory: the database sorts with its own spill files, and no
list of rows is ever built (on PostgreSQL a server-side cursor: `storage.db.stream`). A grant
belongs to the period when its access window overlaps it: it started (granted, or approved when the
grant time is unknown) before `until`, and it had not ended before `since`. Requests that never
reached an approval (pending, denied, expired, and whatever other statuses mean "never held") are not
access and are left out.

How a grant ended is read from the real columns and the request's own audit rows: `revoked_by`
(Revoke now) with the end it had before (`access.revoke_requested`), the extension that took the
access over (`access.handed_over`), and, on an extension, the grant it continues and the end it
moved (`access.extended`). The `extends` column alone says nothing: an extension approved after the
access ended is an ordinary grant. Cancelled requests were never access and are left out.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import sqlite_utils

from core.access_review import GrantRecord, TargetSummary, request_reason
from storage.db import dialect, from_db_time, stream, to_db_time
from storage.grant_spec import decode_grant_spec, recorded_identity

# The statuses of requests that were approved, so may have held access.
REVIEW_STATUSES = ("approved", "granted", "revoked", "failed")
_STATUS_LIST = ", ".join(f"'{s}'" for s in REVIEW_STATUSES)
_START = "coalesce(r.granted_at, r.decided_at)"
# A failed grant is a point in time (its attempt); a live grant has no end yet.
_END = "coalesce(r.ended_at, CASE WHEN r.status = 'failed' THEN r.decided_at END)"
_WINDOW = f"r.status IN ({_STATUS_LIST}) AND {_START} < :until AND ({_END} IS NULL OR {_END} >= :since)"
_FETCH = 500  # rows per fetchmany: the cursor streams, this only batches the thread's work


def review_targets(db: sqlite_utils.Database, since: datetime, until: datetime) -> list[TargetSummary]:
    """Every (flow, target) with a grant in the period, with its grant and people counts, by name."""
    rows = db.execute(
        f"SELECT r.flow, r.target, COUNT(*), COUNT(DISTINCT r.requester) FROM requests r WHERE {_WINDOW} "
        "GROUP BY r.flow, r.target ORDER BY r.flow COLLATE BINARY, r.target COLLATE BINARY",
        {"since": to_db_time(since), "until": to_db_time(until)},
    ).fetchall()
    return [TargetSummary(flow, target, grants, people) for flow, target, grants, people in rows]


def review_grants(
    db: sqlite_utils.Database,
    since: datetime,
    until: datetime,
    *,
    flow: str | None = None,
    target: str | None = None,
    by_person: bool = False,
) -> Iterator[GrantRecord]:
    """The grants of the period (of one flow's target when given), oldest first; with `by_person`,
    grouped by requester first (a timeline draws one lane per person)."""
    where = _WINDOW
    params: dict[str, Any] = {"since": to_db_time(since), "until": to_db_time(until)}
    if flow is not None:
        where += " AND r.flow = :flow"
        params["flow"] = flow
    if target is not None:
        where += " AND r.target = :target"
        params["target"] = target
    # Byte order on both engines (docs/operations.md): a PostgreSQL locale must not reorder the review.
    person = "r.requester COLLATE BINARY, " if by_person else ""
    order = f"r.flow COLLATE BINARY, r.target COLLATE BINARY, {person}{_START}, r.id"
    _detail = _detail_pg if dialect(db) == "postgresql" else _detail_sqlite
    sql = (
        "SELECT r.id, r.flow, r.target, r.requester, r.requester_email, r.grant_spec, r.status, r.created_at, "
        "r.decided_by, r.decided_at, r.fields, r.decision_reason, "
        f"{_START}, r.expires_at, r.ended_at, r.revoked_by, r.failure_reason, r.last_error, r.end_reason, "
        f"{_detail('access.handed_over', 'access_kept_by')}, {_detail('access.extended', 'extends')}, "
        f"{_detail('access.extended', 'previous_end')}, {_detail('access.revoke_requested', 'planned_end')} "
        f"FROM requests r WHERE {where} ORDER BY {order}"
    )
    cursor = stream(db, sql, params)
    while batch := cursor.fetchmany(_FETCH):
        for row in batch:
            yield _record(row)


def _detail_sqlite(action: str, key: str) -> str:
    """SQL for one key of the latest `action` audit row about the request (the audit_events_request index)."""
    return (
        f"(SELECT json_extract(a.detail, '$.{key}') FROM audit_events a WHERE a.request_id = r.id "
        f"AND a.action = '{action}' AND json_valid(a.detail) ORDER BY a.id DESC LIMIT 1)"
    )


def _detail_pg(action: str, key: str) -> str:
    """The same in PostgreSQL's JSON operators; `detail` is always JSON there (written only by the
    audit writer, and no row can be changed afterwards)."""
    return (
        f"(SELECT CAST(a.detail AS jsonb) ->> '{key}' FROM audit_events a WHERE a.request_id = r.id "
        f"AND a.action = '{action}' ORDER BY a.id DESC LIMIT 1)"
    )


def _time(text: str | None) -> datetime | None:
    return None if text is None else from_db_time(text)


def _record(row: tuple[Any, ...]) -> GrantRecord:
    (
        request_id,
        flow,
        target,
        requester,
        email,
        spec,
        status,
        created_at,
        decided_by,
        decided_at,
        fields,
        decision_reason,
        start,
        expires_at,
        ended_at,
        ended_by,
        failure,
        last_error,
        end_reason,
        kept_by,
        continues,
        previous_end,
        planned_end,
    ) = row
    grant_spec = decode_grant_spec(spec)
    held_since = grant_spec.get("held_since") if continues else None
    return GrantRecord(
        request_id=request_id,
        flow=flow,
        target=target,
        requester=requester,
        requester_email=email,
        identity=recorded_identity(grant_spec),
        status=status,
        requested_at=from_db_time(created_at),
        approved_by=decided_by,
        approved_at=_time(decided_at),
        reason=request_reason(json.loads(fields) if fields else {}),
        approval_note=decision_reason,
        start=_time(start),
        # Revoke now moves the stored end to the moment it was asked for: the planned end is in its audit row.
        scheduled_end=_iso(planned_end) if ended_by and planned_end else _time(expires_at),
        ended_at=_time(ended_at),
        ended_by=ended_by,
        failure=failure,
        last_error=last_error,
        end_reason=end_reason,
        extended_by=kept_by if isinstance(kept_by, str) else None,
        continues=continues if isinstance(continues, str) else None,
        held_since=_iso(held_since),
        previous_end=_iso(previous_end),
        approval_only=bool(grant_spec.get("approval_only")),
    )


def _iso(value: object) -> datetime | None:
    """An ISO time out of an audit detail or a grant_spec (aware UTC); None when absent or unreadable."""
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
