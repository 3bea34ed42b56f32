"""DriftRepo: what drift reconciliation remembers between runs (core.reconcile.DriftStore).

Each change to a finding is written with its audit row in one transaction, so the trail and the
findings never disagree: a finding recorded is audited, a removal recorded is audited. The open
finding of a holder is unique (a partial index); once resolved, the same holder is a new finding.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Iterable
from datetime import datetime
from typing import Any

import sqlite_utils

from core.models import AuditEvent
from core.reconcile import Finding, LiveGrant
from core.secrets import SecretRegistry
from core.strategy import Holder
from storage.audit import AuditWriter
from storage.db import Store, from_db_time, to_db_time
from storage.grant_spec import decode_grant_spec, recorded_identity

_FINDING = (
    "SELECT id, access_key, flow, target, holder_id, holder_name, holder_kind, found_at, alerted_at, "
    "removal_attempts, last_error FROM drift_findings"
)
_LIVE = "(status IN ('approved', 'granted') OR (status = 'failed' AND next_attempt_at IS NOT NULL))"


def _finding(row: tuple[Any, ...]) -> Finding:
    fid, key, flow, target, holder_id, name, kind, found, alerted, attempts, error = row
    return Finding(
        id=fid,
        access_key=key,
        flow=flow,
        target=target,
        holder=Holder(id=holder_id, name=name, kind=kind),
        found_at=from_db_time(found),
        alerted_at=None if alerted is None else from_db_time(alerted),
        removal_attempts=attempts,
        last_error=error,
    )


def _live(row: tuple[Any, ...]) -> LiveGrant:
    request_id, flow, target, requester, email, spec, state = row
    values = json.loads(state) if state and state != "{}" else {}
    return LiveGrant(
        request_id=request_id,
        flow=flow,
        target=target,
        requester=requester,
        requester_email=email,
        identity=recorded_identity(decode_grant_spec(spec)),
        state=frozenset(str(v) for v in values.values() if v),
    )


class DriftRepo:
    """Findings, run times and listing failures of drift reconciliation, in SQLite."""

    def __init__(self, store: Store, secrets: SecretRegistry | None = None) -> None:
        self._store = store
        self._audit = AuditWriter(SecretRegistry() if secrets is None else secrets)

    async def last_run(self, flow: str) -> datetime | None:
        """When reconciliation of `flow` last started, or None if it never ran."""
        row = await self._store.read(
            lambda db: db.execute(
                "SELECT last_run_at FROM reconcile_state WHERE flow = ? AND target = ''", [flow]
            ).fetchone()
        )
        return None if row is None or row[0] is None else from_db_time(row[0])

    async def record_run(self, flow: str, at: datetime) -> None:
        """Remember that reconciliation of `flow` started at `at`."""
        await self._store.write(
            lambda db: db.execute(
                "INSERT INTO reconcile_state (flow, target, last_run_at) VALUES (?, '', ?) "
                "ON CONFLICT (flow, target) DO UPDATE SET last_run_at = excluded.last_run_at",
                [flow, to_db_time(at)],
            )
        )

    async def live_grants(self, flows: Collection[str], request_ids: Collection[str]) -> list[LiveGrant]:
        """Requests of `flows` (or with one of `request_ids`) that may hold access now."""
        flows, ids = list(flows), list(request_ids)
        if not flows and not ids:
            return []

        def query(db: sqlite_utils.Database) -> list[LiveGrant]:
            conditions = []
            if flows:
                conditions.append(f"flow IN ({', '.join('?' * len(flows))})")
            if ids:
                conditions.append(f"id IN ({', '.join('?' * len(ids))})")
            sql = (
                "SELECT id, flow, target, requester, requester_email, grant_spec, grant_state FROM requests "
                f"WHERE {_LIVE} AND ({' OR '.join(conditions)})"
            )
            return [_live(row) for row in db.execute(sql, [*flows, *ids]).fetchall()]

        return await self._store.read(query)

    async def open_findings(self, access_key: str) -> dict[str, Finding]:
        """The unresolved findings of one access, by holder id."""
        rows = await self._store.read(
            lambda db: db.execute(
                f"{_FINDING} WHERE access_key = ? AND resolved_at IS NULL ORDER BY id", [access_key]
            ).fetchall()
        )
        return {row[4]: _finding(row) for row in rows}

    async def add_finding(
        self, access_key: str, flow: str, target: str, holder: Holder, at: datetime, audit: AuditEvent
    ) -> Finding:
        """Record a new finding with its audit row."""

        def apply(db: sqlite_utils.Database) -> Finding:
            (finding_id,) = db.execute(
                "INSERT INTO drift_findings (access_key, flow, target, holder_id, holder_name, holder_kind, found_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING id",
                [access_key, flow, target, holder.id, holder.name, holder.kind, to_db_time(at)],
            ).fetchone()
            self._audit.insert(db, audit)
            row = db.execute(f"{_FINDING} WHERE id = ?", [finding_id]).fetchone()
            return _finding(row)

        return await self._store.write(apply)

    async def finding_alerted(self, finding_id: int, at: datetime) -> None:
        """Remember that the operators were told about this finding."""
        await self._store.write(
            lambda db: db.execute("UPDATE drift_findings SET alerted_at = ? WHERE id = ?", [to_db_time(at), finding_id])
        )

    async def finding_removed(self, finding_id: int, at: datetime, audit: AuditEvent) -> None:
        """The holder's access was removed: the finding is resolved, with its audit row."""

        def apply(db: sqlite_utils.Database) -> None:
            db.execute(
                "UPDATE drift_findings SET resolved_at = ?, resolution = 'removed', last_error = NULL, "
                "removal_attempts = removal_attempts + 1 WHERE id = ?",
                [to_db_time(at), finding_id],
            )
            self._audit.insert(db, audit)

        await self._store.write(apply)

    async def removal_failed(self, finding_id: int, error: str, audit: AuditEvent | None) -> None:
        """Count a failed removal (and audit it when `audit` is given)."""

        def apply(db: sqlite_utils.Database) -> None:
            db.execute(
                "UPDATE drift_findings SET removal_attempts = removal_attempts + 1, last_error = ? WHERE id = ?",
                [self._audit.secrets.scrub(error), finding_id],
            )
            if audit is not None:
                self._audit.insert(db, audit)

        await self._store.write(apply)

    async def resolve(self, findings: Iterable[Finding], at: datetime, resolution: str, actor: str) -> None:
        """Close findings whose holder no longer holds the access without a grant, each with an audit row."""
        findings = list(findings)

        def apply(db: sqlite_utils.Database) -> None:
            for finding in findings:
                db.execute(
                    "UPDATE drift_findings SET resolved_at = ?, resolution = ? WHERE id = ? AND resolved_at IS NULL",
                    [to_db_time(at), resolution, finding.id],
                )
                self._audit.insert(
                    db,
                    AuditEvent(
                        at=at,
                        actor=actor,
                        action="drift.resolved",
                        detail={
                            "flow": finding.flow,
                            "target": finding.target,
                            "access": finding.access_key,
                            "holder": finding.holder.name,
                            "holder_id": finding.holder.id,
                            "resolution": resolution,
                        },
                    ),
                )

        await self._store.write(apply)

    async def listing_failed(self, flow: str, target: str, at: datetime, error: str, audit: AuditEvent) -> bool:
        """Remember a failed listing; True (and the audit row written) when it starts a run of failures."""

        def apply(db: sqlite_utils.Database) -> bool:
            row = db.execute(
                "SELECT failing_since FROM reconcile_state WHERE flow = ? AND target = ?", [flow, target]
            ).fetchone()
            first = row is None or row[0] is None
            db.execute(
                "INSERT INTO reconcile_state (flow, target, failing_since, last_error) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (flow, target) DO UPDATE SET last_error = excluded.last_error, "
                "failing_since = coalesce(reconcile_state.failing_since, excluded.failing_since)",
                [flow, target, to_db_time(at), self._audit.secrets.scrub(error)],
            )
            if first:
                self._audit.insert(db, audit)
            return first

        return await self._store.write(apply)

    async def listing_succeeded(self, flow: str, target: str, at: datetime, audit: AuditEvent) -> bool:
        """Clear a run of failed listings; True (and the audit row written) when there was one."""

        def apply(db: sqlite_utils.Database) -> bool:
            row = db.execute(
                "SELECT failing_since FROM reconcile_state WHERE flow = ? AND target = ?", [flow, target]
            ).fetchone()
            if row is None or row[0] is None:
                return False
            db.execute(
                "UPDATE reconcile_state SET failing_since = NULL, last_error = NULL WHERE flow = ? AND target = ?",
                [flow, target],
            )
            self._audit.insert(db, audit)
            return True

        return await self._store.write(apply)
