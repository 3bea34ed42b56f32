"""The grants of a period, read out of the requests table for the access review (core.access_review).

Everything here is a generator over one SQLite cursor, run on the store's thread (`Store.read`), so
a year of grants streams through in bounded memory: SQLite sorts with its own spill files, and no
list of rows is ever built. A grant belongs to the period when its access window overlaps it:
it started (granted, or approved when the grant time is unknown) before `until`, and it had not
ended before `since`. Requests that never reached an approval (pending, denied, expired, and
whatever other statuses mean "never held") are not access and are left out.

Extensions are read defensively: the `extends` link between requests may not exist in this
database yet, so the query asks for it only when the column is there; an `access.extended` audit
row about a request marks it extended either way.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import sqlite_utils

from core.access_review import GrantRecord, TargetSummary, request_reason
from storage.db import dialect, from_db_time, to_db_time

# The statuses of requests that were approved, so may have held access.
REVIEW_STATUSES = ("approved", "granted", "revoked", "failed")
_STATUS_LIST = ", ".join(f"'{s}'" for s in REVIEW_STATUSES)
_START = "coalesce(r.granted_at, r.decided_at)"
# A failed grant is a point in time (its attempt); a live grant has no end yet.
_END = "coalesce(r.ended_at, CASE WHEN r.status = 'failed' THEN r.decided_at END)"
_WINDOW = f"r.status IN ({_STATUS_LIST}) AND {_START} < :until AND ({_END} IS NULL OR {_END} >= :since)"
_FETCH = 500  # rows per fetchmany: the cursor streams, this only batches the thread's work


def _columns(db: sqlite_utils.Database, table: str) -> frozenset[str]:
    if dialect(db) == "postgresql":
        sql = (
            "SELECT column_name FROM information_schema.columns "
            "WHERE table_schema = current_schema() AND table_name = ?"
        )
        return frozenset(row[0] for row in db.execute(sql, [table]).fetchall())
    return frozenset(row[1] for row in db.execute(f"PRAGMA table_info({table})").fetchall())


def review_targets(db: sqlite_utils.Database, since: datetime, until: datetime) -> list[TargetSummary]:
    """Every (flow, target) with a grant in the period, with its grant and people counts, by name."""
    rows = db.execute(
        f"SELECT r.flow, r.target, COUNT(*), COUNT(DISTINCT r.requester) FROM requests r WHERE {_WINDOW} "
        "GROUP BY r.flow, r.target ORDER BY r.flow, r.target",
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
    columns = _columns(db, "requests")
    extension_join, extended = "", "NULL"
    if "extends" in columns:  # the link an extension request keeps to the grant it extends
        extension_join = (
            "LEFT JOIN (SELECT extends AS extended_id, group_concat(id) AS extended_by FROM requests "
            f"WHERE extends IS NOT NULL AND status IN ({_STATUS_LIST}) GROUP BY extends) x ON x.extended_id = r.id"
        )
        extended = "x.extended_by"
    # Who ended it: a `revoked_by` column where the database has one, else the audit row's actor.
    audit_actor = (
        "(SELECT a.actor FROM audit_events a WHERE a.request_id = r.id AND a.action = 'access.revoked' "
        "ORDER BY a.id DESC LIMIT 1)"
    )
    ended_by = f"coalesce(r.revoked_by, {audit_actor})" if "revoked_by" in columns else audit_actor
    extended_audit = "EXISTS (SELECT 1 FROM audit_events a WHERE a.request_id = r.id AND a.action = 'access.extended')"
    where = _WINDOW
    params: dict[str, Any] = {"since": to_db_time(since), "until": to_db_time(until)}
    if flow is not None:
        where += " AND r.flow = :flow"
        params["flow"] = flow
    if target is not None:
        where += " AND r.target = :target"
        params["target"] = target
    order = f"r.flow, r.target, {'r.requester, ' if by_person else ''}{_START}, r.id"
    sql = (
        "SELECT r.id, r.flow, r.target, r.requester, r.requester_email, r.grant_spec, r.status, r.created_at, "
        "r.decided_by, r.decided_at, r.fields, r.decision_reason, "
        f"{_START}, r.expires_at, r.ended_at, {ended_by}, r.failure_reason, r.last_error, "
        f"{extended}, {extended_audit} "
        f"FROM requests r {extension_join} WHERE {where} ORDER BY {order}"
    )
    cursor = db.execute(sql, params)
    while batch := cursor.fetchmany(_FETCH):
        for row in batch:
            yield _record(row)


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
        extended_by,
        extended_in_audit,
    ) = row
    identity = json.loads(spec).get("identity") if spec and spec != "{}" else None
    extensions = tuple(i for i in (extended_by or "").split(",") if i)
    if not extensions and extended_in_audit:
        extensions = ("a later request",)
    return GrantRecord(
        request_id=request_id,
        flow=flow,
        target=target,
        requester=requester,
        requester_email=email,
        identity=identity if isinstance(identity, str) else None,
        status=status,
        requested_at=from_db_time(created_at),
        approved_by=decided_by,
        approved_at=_time(decided_at),
        reason=request_reason(json.loads(fields) if fields else {}),
        approval_note=decision_reason,
        start=_time(start),
        scheduled_end=_time(expires_at),
        ended_at=_time(ended_at),
        ended_by=ended_by if ended_by and ended_by != "system" else None,
        failure=failure,
        last_error=last_error,
        extended_by=extensions,
    )
