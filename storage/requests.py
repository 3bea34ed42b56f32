"""RequestRepo: access requests, with every status change a compare-and-set.

A transition and its audit row are written in one transaction. The compare-and-set is the UPDATE
itself (`… WHERE id = ? AND status = ?`): on SQLite the transaction is `BEGIN IMMEDIATE` on the
store's single writer thread, and on PostgreSQL transitions run beside other replicas' writes
(storage/concurrent_writes.py), where the row lock makes a second writer re-check the status the
first one wrote. Two approvers clicking at once, a double click or a replayed Socket Mode envelope
all see exactly one winner, and the losers get `InvalidTransition` carrying the status they lost to.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import Collection, Iterable, Mapping, Sequence
from datetime import datetime
from types import MappingProxyType
from typing import Any, NamedTuple

import sqlite_utils

from core.errors import InvalidTransition, RequestNotFound
from core.models import AccessRequest, AuditEvent, RequestStatus
from core.ports import LiveGrants
from core.secrets import SecretRegistry
from core.state import can_transition
from storage.after_approval import AfterApprovalQueries
from storage.audit import AuditWriter
from storage.concurrent_writes import concurrent
from storage.db import Store, from_db_time, to_db_time
from storage.request_rows import FIELDS, Encoders, encode_changes, encoders, request_to_values, row_to_request

_SELECT = f"SELECT {', '.join(FIELDS)} FROM requests"


StatusSpec = RequestStatus | str | Collection[RequestStatus]


class GrantSchedule(NamedTuple):
    """What the scheduler needs to re-arm one live grant, without loading the whole request."""

    id: str
    expires_at: datetime
    next_attempt_at: datetime | None


# What may still hold access: approved, granted, and failed grants whose clean-up is due.
_LIVE = "status IN ('approved', 'granted') OR (status = 'failed' AND next_attempt_at IS NOT NULL)"


class PendingTimeout(NamedTuple):
    """What the scheduler needs to arm one pending request's approval timeout."""

    id: str
    timeout_at: datetime


def _statuses(spec: StatusSpec) -> frozenset[RequestStatus]:
    if isinstance(spec, str):  # RequestStatus is a str too
        return frozenset({RequestStatus(spec)})
    statuses = frozenset(RequestStatus(s) for s in spec)
    if not statuses:
        raise ValueError("at least one expected status is required")
    return statuses


def _bind_audit(audit: AuditEvent, request_id: str, **overrides: Any) -> AuditEvent:
    if audit.request_id not in (None, request_id):
        raise ValueError(f"audit event is about {audit.request_id}, not {request_id}")
    return dataclasses.replace(audit, request_id=request_id, **overrides)


def _current_status(db: sqlite_utils.Database, request_id: str) -> RequestStatus:
    row = db.execute("SELECT status FROM requests WHERE id = ?", [request_id]).fetchone()
    if row is None:
        raise RequestNotFound(f"no request {request_id}", user_message="This request no longer exists.")
    return RequestStatus(row[0])


def _select_one(db: sqlite_utils.Database, request_id: str) -> AccessRequest:
    row = db.execute(f"{_SELECT} WHERE id = ?", [request_id]).fetchone()
    if row is None:
        raise RequestNotFound(f"no request {request_id}", user_message="This request no longer exists.")
    return row_to_request(row)


class TransitionStep(NamedTuple):
    """One checked compare-and-set, ready to run inside a transaction."""

    request_id: str
    expected: frozenset[RequestStatus]
    new: RequestStatus
    assignments: dict[str, Any]


def prepare_transition(
    request_id: str, expected: StatusSpec, new: RequestStatus, changes: Mapping[str, Any], encode: Encoders
) -> TransitionStep:
    """Check a transition against the state table and encode its changes, before any I/O."""
    new = RequestStatus(new)
    expected_set = _statuses(expected)
    for status in sorted(expected_set):
        if not can_transition(status, new):
            raise InvalidTransition(request_id, status.value, new.value)
    return TransitionStep(request_id, expected_set, new, {"status": new.value, **encode_changes(changes, encode)})


def apply_transition(
    db: sqlite_utils.Database, step: TransitionStep, audit: AuditEvent, writer: AuditWriter
) -> AccessRequest:
    """Run one compare-and-set and its audit row inside the caller's transaction."""
    return apply_transitions(db, [(step, audit)], writer)[0]


def apply_transitions(
    db: sqlite_utils.Database, steps: Sequence[tuple[TransitionStep, AuditEvent]], writer: AuditWriter
) -> list[AccessRequest]:
    """Run compare-and-sets in order, then their audit rows, inside the caller's transaction.

    Rows first, audit rows after: a transaction then holds its request rows before it waits for the
    audit chain's lock, never the other way round, so two of them cannot deadlock over it."""
    done = [
        (*_compare_and_set(db, step.request_id, step.assignments, step.expected, step.new.value), step, audit)
        for step, audit in steps
    ]
    for _, current, step, audit in done:
        writer.insert(db, _bind_audit(audit, step.request_id, status_from=current.value, status_to=step.new.value))
    return [row for row, *_ in done]


def _compare_and_set(
    db: sqlite_utils.Database,
    request_id: str,
    assignments: Mapping[str, Any],
    expected: frozenset[RequestStatus] | None,
    wanted: str,
) -> tuple[AccessRequest, RequestStatus]:
    """Apply `assignments` while the request's status is one of `expected` (any, when None); return the row
    as written and the status it was in. InvalidTransition names the status found when it is not expected.

    The UPDATE's status guard is the check: on SQLite nothing else writes meanwhile, but a PostgreSQL
    transaction marked concurrent (storage/concurrent_writes.py) may lose a race between reading the
    status and updating; the update then matches no row and the status is read again.
    """
    # One status expected: the update itself is the check (its row comes back through RETURNING),
    # and the status is read only to say what was found instead.
    current = next(iter(expected)) if expected is not None and len(expected) == 1 else None
    for _ in range(CAS_ATTEMPTS):
        if current is None or (expected is not None and current not in expected):
            current = _current_status(db, request_id)
            if expected is not None and current not in expected:
                raise InvalidTransition(request_id, current.value, wanted)
        # fetchall: a RETURNING statement must run to completion before anything else on the connection.
        rows = db.execute(
            f"UPDATE requests SET {', '.join(f'{c} = ?' for c in assignments)} WHERE id = ? AND status = ? "
            f"RETURNING {', '.join(FIELDS)}",
            [*assignments.values(), request_id, current.value],
        ).fetchall()
        if len(rows) == 1:
            return row_to_request(rows[0]), current
        current = None  # changed since it was read (or never was what was expected): read it again
    # Only a request whose status changes on every attempt gets here; nothing was written.
    raise InvalidTransition(request_id, _current_status(db, request_id).value, wanted)


CAS_ATTEMPTS = 8  # reads per compare-and-set: each retry means another writer changed the row meanwhile


_INSERT = f"INSERT INTO requests ({', '.join(FIELDS)}) VALUES ({', '.join('?' * len(FIELDS))})"


def _creation_audit(request: AccessRequest, audit: AuditEvent) -> AuditEvent:
    status_to = audit.status_to if audit.status_to is not None else request.status.value
    return _bind_audit(audit, request.id, status_to=status_to)


def _encode_all(items: list[tuple[AccessRequest, AuditEvent]], encode: Encoders) -> tuple[list[Any], list[AuditEvent]]:
    """The rows and audit events of new requests: a bad value fails here, before any row is written."""
    rows = [request_to_values(request, encode) for request, _ in items]
    audits = [_creation_audit(request, audit) for request, audit in items]
    return rows, audits


def _insert_all(db: sqlite_utils.Database, rows: list[Any], audits: list[AuditEvent], audit: AuditWriter) -> int:
    # executemany reuses one prepared statement per table (3x faster than a loop of execute()).
    db.conn.executemany(_INSERT, rows)
    audit.insert_many(db, audits)
    return len(rows)


class RequestRepo(AfterApprovalQueries):
    """Stores access requests; every status change is a compare-and-set with its audit row."""

    def __init__(self, store: Store, secrets: SecretRegistry | None = None) -> None:
        self._store = store
        # The runtime's registry scrubs free text and audit rows on the store's writer thread.
        secrets = SecretRegistry() if secrets is None else secrets
        self._encoders = encoders(secrets)
        self._audit = AuditWriter(secrets)

    async def create(self, request: AccessRequest, audit: AuditEvent) -> AccessRequest:
        """Insert a new request and its audit row together; a duplicate id raises sqlite3.IntegrityError."""
        await self._store.write(
            concurrent(lambda db: _insert_all(db, *_encode_all([(request, audit)], self._encoders), self._audit))
        )
        return request

    async def create_many(self, items: Iterable[tuple[AccessRequest, AuditEvent]]) -> int:
        """Insert many requests with their audit rows in ONE transaction (imports, benchmarks)."""
        items = list(items)
        # Encoded before the transaction, on a worker thread: a million rows take seconds, which inside
        # it would hold the writers' lock (and, on PostgreSQL, outlast the idle limit of a write).
        rows, audits = await asyncio.to_thread(_encode_all, items, self._encoders)
        return await self._store.write(lambda db: _insert_all(db, rows, audits, self._audit))

    async def get(self, request_id: str) -> AccessRequest:
        """The request with this id; raises RequestNotFound."""
        return await self._store.read(lambda db: _select_one(db, request_id))

    async def transition(
        self,
        request_id: str,
        expected: StatusSpec,
        new: RequestStatus,
        *,
        changes: Mapping[str, Any] = MappingProxyType({}),
        audit: AuditEvent,
    ) -> AccessRequest:
        """Move a request from one of `expected` to `new`, applying `changes`, with its audit row.

        Raises InvalidTransition with the status actually found when the request is no longer in
        an expected status, and with the offending expected status when the state table forbids
        that edge (a caller bug, caught before any I/O); RequestNotFound when it does not exist.
        Nothing is written in any of these cases.
        """
        step = prepare_transition(request_id, expected, new, changes, self._encoders)
        return await self._store.write(concurrent(lambda db: apply_transition(db, step, audit, self._audit)))

    async def update(
        self,
        request_id: str,
        changes: Mapping[str, Any],
        *,
        audit: AuditEvent | None = None,
        expected_status: StatusSpec | None = None,
    ) -> AccessRequest:
        """Change non-status fields (message_ts, revoke_attempts, next_attempt_at, last_error, …).

        With `expected_status`, the change only applies while the request is in one of those
        statuses; otherwise InvalidTransition(current, requested='a|b') is raised and nothing is
        written. `audit`, when given, is written in the same transaction.
        """
        assignments = encode_changes(changes, self._encoders)
        guard = None if expected_status is None else _statuses(expected_status)

        wanted = "|".join(sorted(s.value for s in guard)) if guard is not None else "unchanged"

        def apply(db: sqlite_utils.Database) -> AccessRequest:
            if assignments:
                request, _ = _compare_and_set(db, request_id, assignments, guard, wanted)
            else:
                request = _select_one(db, request_id)
                if guard is not None and request.status not in guard:
                    raise InvalidTransition(request_id, request.status.value, wanted)
            if audit is not None:
                self._audit.insert(db, _bind_audit(audit, request_id))
            return request

        return await self._store.write(concurrent(apply))

    async def list_by_status(self, *statuses: RequestStatus) -> list[AccessRequest]:
        """Every request in any of `statuses`, oldest first."""
        if not statuses:
            raise ValueError("name at least one status")
        values = sorted({RequestStatus(s).value for s in statuses})
        sql = f"{_SELECT} WHERE status IN ({', '.join('?' * len(values))}) ORDER BY created_at, id"
        return await self._fetch(sql, values)

    async def list_due_revocations(self, now: datetime) -> list[AccessRequest]:
        """What must be revoked now, soonest first: granted requests past their end whose next retry
        (if any) is due, and failed grants whose clean-up revoke is due (next_attempt_at set)."""
        when = to_db_time(now)
        sql = (
            f"{_SELECT} WHERE (status = 'granted' AND expires_at <= ? "
            "AND (next_attempt_at IS NULL OR next_attempt_at <= ?)) "
            "OR (status = 'failed' AND next_attempt_at IS NOT NULL AND next_attempt_at <= ?) "
            "ORDER BY expires_at, id"
        )
        return await self._fetch(sql, [when, when, when])

    async def list_live_for(self, flow: str, target: str, requester: str) -> list[AccessRequest]:
        """Approved or granted requests of one person for one target of one flow (the access they cover)."""
        sql = (
            f"{_SELECT} WHERE status IN ('approved', 'granted') AND flow = ? AND target = ? AND requester = ? "
            "ORDER BY expires_at DESC, id"
        )
        return await self._fetch(sql, [flow, target, requester])

    async def list_unposted(self) -> list[AccessRequest]:
        """Pending requests that never reached their approval channel (no message yet)."""
        return await self._fetch(
            f"{_SELECT} WHERE status = 'pending' AND message_ts IS NULL ORDER BY created_at, id", []
        )

    async def list_live_unposted(self, decided_before: datetime) -> list[AccessRequest]:
        """Granted requests with no channel message, approved at or before `decided_before`."""
        sql = f"{_SELECT} WHERE status = 'granted' AND message_ts IS NULL AND decided_at <= ? ORDER BY decided_at, id"
        return await self._fetch(sql, [to_db_time(decided_before)])

    async def list_pending_timed_out(self, now: datetime) -> list[AccessRequest]:
        """Pending requests whose approval timeout is at or before `now`."""
        sql = f"{_SELECT} WHERE status = 'pending' AND timeout_at <= ? ORDER BY timeout_at, id"
        return await self._fetch(sql, [to_db_time(now)])

    async def list_granted_schedule(self, until: datetime | None = None) -> list[GrantSchedule]:
        """(id, expires_at, next_attempt_at) of granted requests: the cheap re-arm query.

        With `until`, only those whose revoke is due by then (expires_at and any next_attempt_at
        both <= until); without it, every granted request.
        """
        sql = "SELECT id, expires_at, next_attempt_at FROM requests WHERE status = 'granted'"
        params: list[Any] = []
        if until is not None:
            sql += " AND expires_at <= ? AND (next_attempt_at IS NULL OR next_attempt_at <= ?)"
            params = [to_db_time(until)] * 2
        # Failed grants whose clean-up revoke is still due are armed like revocations.
        sql = (
            f"{sql} UNION ALL SELECT id, next_attempt_at, next_attempt_at FROM requests "
            "WHERE status = 'failed' AND next_attempt_at IS NOT NULL"
            + (" AND next_attempt_at <= ?" if until is not None else "")
        )
        if until is not None:
            params.append(to_db_time(until))

        def query(db: sqlite_utils.Database) -> list[GrantSchedule]:
            rows = db.execute(f"{sql} ORDER BY 2, 1", params).fetchall()
            parse = from_db_time
            # A granted row always has expires_at (the engine writes it with the transition); a
            # None here would be a bug we want to see, so it is parsed without a guard.
            return [GrantSchedule(i, parse(e), None if n is None else parse(n)) for i, e, n in rows]

        return await self._store.read(query)

    async def list_pending_timeouts(self, until: datetime | None = None) -> list[PendingTimeout]:
        """(id, timeout_at) of pending requests that have a timeout (at or before `until` if given)."""
        sql = "SELECT id, timeout_at FROM requests WHERE status = 'pending' AND timeout_at IS NOT NULL"
        params: list[Any] = []
        if until is not None:
            sql += " AND timeout_at <= ?"
            params = [to_db_time(until)]

        def query(db: sqlite_utils.Database) -> list[PendingTimeout]:
            rows = db.execute(f"{sql} ORDER BY timeout_at, id", params).fetchall()
            return [PendingTimeout(i, from_db_time(t)) for i, t in rows]

        return await self._store.read(query)

    async def count_by_status(self) -> dict[RequestStatus, int]:
        """How many requests are in each status (every status present, zero included)."""

        def query(db: sqlite_utils.Database) -> dict[RequestStatus, int]:
            counts = {status: 0 for status in RequestStatus}
            for status, n in db.execute("SELECT status, COUNT(*) FROM requests GROUP BY status"):
                counts[RequestStatus(status)] = n
            return counts

        return await self._store.read(query)

    async def live_grant_specs(self) -> list[LiveGrants]:
        """Everything that may still hold access (approved, granted, and failed grants whose clean-up
        is due), grouped by (flow, target, recorded grant_spec) and counted: 1,000,000 live grants of
        a handful of targets cost a handful of rows. The ids of a group: `live_grant_ids`."""

        def query(db: sqlite_utils.Database) -> list[LiveGrants]:
            rows = db.execute(
                f"SELECT flow, target, grant_spec, COUNT(*) FROM requests WHERE {_LIVE} "
                "GROUP BY flow, target, grant_spec"
            ).fetchall()
            return [LiveGrants(flow, target, json.loads(spec), spec, n) for flow, target, spec, n in rows]

        return await self._store.read(query)

    async def live_grant_ids(self, group: LiveGrants) -> list[str]:
        """The ids of the live grants of one `live_grant_specs` group (only those whose flow changed
        are ever asked for: a million ids held at once would cost ~60 MB)."""
        sql = f"SELECT id FROM requests WHERE ({_LIVE}) AND flow = ? AND target = ? AND grant_spec = ? ORDER BY id"
        return await self._store.read(
            lambda db: [row[0] for row in db.execute(sql, [group.flow, group.target, group.spec_text]).fetchall()]
        )

    async def live_counts_by_flow(self) -> dict[str, int]:
        """How many pending, approved or granted requests each flow name has."""

        def query(db: sqlite_utils.Database) -> dict[str, int]:
            sql = "SELECT flow, COUNT(*) FROM requests WHERE status IN ('pending', 'approved', 'granted') GROUP BY flow"
            return {flow: n for flow, n in db.execute(sql)}

        return await self._store.read(query)

    async def _fetch(self, sql: str, params: list[Any]) -> list[AccessRequest]:
        return await self._store.read(lambda db: [row_to_request(r) for r in db.execute(sql, params).fetchall()])
