"""Schema migrations, applied in order at start; each runs in its own transaction.

sqlite-utils' `Migrations` records what has been applied in `_sqlite_migrations`. Migrations are
append-only: never edit one that has shipped, add the next `mNNN_…` function instead.
Timestamps are TEXT in one fixed UTC form (see `storage.db.to_db_time`) so ranges compare as text;
JSON columns hold the request's `fields`, `grant_state` and `approvers`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable

import sqlite_utils
from sqlite_utils.migrations import Migrations

from core.audit_events import GENESIS_HASH, StoredEvent, event_id_at, event_type, read_detail, via_for
from core.errors import StartupError
from core.models import RequestStatus

MIGRATION_SET = "jitbot"
MIGRATIONS = Migrations(MIGRATION_SET)
KNOWN_MIGRATIONS: list[str] = []


def _migration(fn: Callable[[sqlite_utils.Database], None]) -> Callable[[sqlite_utils.Database], None]:
    MIGRATIONS()(fn)
    KNOWN_MIGRATIONS.append(fn.__name__)
    return fn


_STATUSES = ", ".join(f"'{s.value}'" for s in RequestStatus)


@_migration
def m001_requests(db: sqlite_utils.Database) -> None:
    """One row per access request, with every AccessRequest field."""
    db.execute(
        f"""
        CREATE TABLE requests (
            id               TEXT PRIMARY KEY,
            flow             TEXT NOT NULL,
            target           TEXT NOT NULL,
            requester        TEXT NOT NULL,
            requester_email  TEXT,
            status           TEXT NOT NULL CHECK (status IN ({_STATUSES})),
            created_at       TEXT NOT NULL,
            duration_seconds INTEGER NOT NULL CHECK (duration_seconds >= 0),
            fields           TEXT NOT NULL DEFAULT '{{}}',
            approval_channel TEXT,
            message_ts       TEXT,
            approvers        TEXT,
            decided_by       TEXT,
            decided_at       TEXT,
            decision_reason  TEXT,
            timeout_at       TEXT,
            granted_at       TEXT,
            expires_at       TEXT,
            ended_at         TEXT,
            grant_state      TEXT NOT NULL DEFAULT '{{}}',
            failure_reason   TEXT,
            revoke_attempts  INTEGER NOT NULL DEFAULT 0 CHECK (revoke_attempts >= 0),
            next_attempt_at  TEXT,
            last_error       TEXT
        )
        """
    )
    # (status, time) pairs serve every scheduler query: due revocations, grants ending before t,
    # stale pending requests; status alone is their left prefix for list_by_status/count_by_status.
    db.execute("CREATE INDEX requests_status_expires ON requests (status, expires_at)")
    db.execute("CREATE INDEX requests_status_timeout ON requests (status, timeout_at)")
    db.execute("CREATE INDEX requests_requester ON requests (requester, created_at)")


@_migration
def m002_audit_events(db: sqlite_utils.Database) -> None:
    """The append-only audit trail; triggers refuse UPDATE and DELETE."""
    # No foreign key to requests: the trail must also hold events about requests that were never
    # stored (a refused submission) and events with no request at all (identity overrides).
    db.execute(
        """
        CREATE TABLE audit_events (
            id          INTEGER PRIMARY KEY AUTOINCREMENT,
            at          TEXT NOT NULL,
            request_id  TEXT,
            actor       TEXT NOT NULL,
            action      TEXT NOT NULL,
            status_from TEXT,
            status_to   TEXT,
            detail      TEXT NOT NULL DEFAULT '{}'
        )
        """
    )
    db.execute("CREATE INDEX audit_events_request ON audit_events (request_id, id)")
    db.execute("CREATE INDEX audit_events_at ON audit_events (at)")
    # Evidence for auditors must not be editable through the app; ABORT undoes just the statement,
    # and the caller's write() then rolls its whole transaction back.
    db.execute(
        """
        CREATE TRIGGER audit_events_no_update BEFORE UPDATE ON audit_events
        BEGIN SELECT RAISE(ABORT, 'audit_events is append-only: UPDATE refused'); END
        """
    )
    db.execute(
        """
        CREATE TRIGGER audit_events_no_delete BEFORE DELETE ON audit_events
        BEGIN SELECT RAISE(ABORT, 'audit_events is append-only: DELETE refused'); END
        """
    )


@_migration
def m003_identity_overrides(db: sqlite_utils.Database) -> None:
    """Per-user, per-system identity overrides (system '*' applies to every system)."""
    db.execute(
        """
        CREATE TABLE identity_overrides (
            slack_id   TEXT NOT NULL,
            system     TEXT NOT NULL,
            identity   TEXT NOT NULL,
            updated_at TEXT NOT NULL,
            updated_by TEXT NOT NULL,
            PRIMARY KEY (slack_id, system)
        )
        """
    )


@_migration
def m004_audit_events_no_replace(db: sqlite_utils.Database) -> None:
    """Refuse an INSERT that would replace an audit row (INSERT OR REPLACE, REPLACE INTO)."""
    # A REPLACE deletes the conflicting row without firing DELETE triggers unless the connection has
    # PRAGMA recursive_triggers on: ours has (sqlite-utils sets it), a sqlite3 shell does not. A
    # BEFORE INSERT trigger lives in the file, so it holds for every connection. An UPSERT's DO
    # UPDATE is refused here too, before the UPDATE trigger would. In a BEFORE INSERT trigger an id
    # that SQLite will assign reads as -1; AUTOINCREMENT never assigns -1, so -1 is left alone.
    db.execute(
        """
        CREATE TRIGGER audit_events_no_replace BEFORE INSERT ON audit_events
        WHEN NEW.id <> -1 AND EXISTS (SELECT 1 FROM audit_events WHERE id = NEW.id)
        BEGIN SELECT RAISE(ABORT, 'audit_events is append-only: replacing a row refused'); END
        """
    )


@_migration
def m005_requests_grant_spec(db: sqlite_utils.Database) -> None:
    """What a grant recorded of its strategy and target, to revoke it after its flow changes or goes."""
    db.execute("ALTER TABLE requests ADD COLUMN grant_spec TEXT NOT NULL DEFAULT '{}'")


_STATUS_CHECK = re.compile(r"CHECK\s*\(\s*status\s+IN\s*\([^)]*\)\s*\)", re.IGNORECASE)


@_migration
def m006_requests_admit_cancelled(db: sqlite_utils.Database) -> None:
    """Rebuild `requests` so its status CHECK admits every status of this version (`cancelled`)."""
    # SQLite cannot alter a CHECK constraint: the table is rebuilt (create, copy, drop, rename), the
    # way SQLite's own documentation describes. The new table is the old one's own CREATE statement
    # with only the status list replaced, so a column any earlier migration added is kept, and rows
    # are copied by an explicit column list. audit_events and its triggers are another table: untouched.
    create = db.execute("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'requests'").fetchone()[0]
    indexes = [
        sql
        for (sql,) in db.execute(
            "SELECT sql FROM sqlite_master WHERE type = 'index' AND tbl_name = 'requests' AND sql IS NOT NULL"
        ).fetchall()
    ]
    columns = ", ".join(f'"{row[1]}"' for row in db.execute("PRAGMA table_info(requests)").fetchall())
    rebuilt, found = _STATUS_CHECK.subn(f"CHECK (status IN ({_STATUSES}))", create, count=1)
    if found != 1:
        raise StartupError("the requests table has no status CHECK to update; the database is not jitbot's")
    rebuilt = re.sub(r"^\s*CREATE TABLE\s+\"?requests\"?", "CREATE TABLE requests_rebuilt", rebuilt, count=1)
    db.execute(rebuilt)
    db.execute(f"INSERT INTO requests_rebuilt ({columns}) SELECT {columns} FROM requests")
    db.execute("DROP TABLE requests")
    db.execute("ALTER TABLE requests_rebuilt RENAME TO requests")
    for sql in indexes:
        db.execute(sql)


@_migration
def m007_requests_after_approval(db: sqlite_utils.Database) -> None:
    """What the life of access after approval records: the grant a request extends, who ended a
    grant early and why, and when the end-of-access warning is due."""
    db.execute("ALTER TABLE requests ADD COLUMN extends TEXT")
    db.execute("ALTER TABLE requests ADD COLUMN revoked_by TEXT")
    db.execute("ALTER TABLE requests ADD COLUMN end_reason TEXT")
    db.execute("ALTER TABLE requests ADD COLUMN warn_at TEXT")
    # The sweep's due warnings, and a person's own requests (App Home, /sym list).
    db.execute("CREATE INDEX requests_status_warn ON requests (status, warn_at)")
    db.execute("CREATE INDEX requests_extends ON requests (extends)")


@_migration
def m008_requests_approvals(db: sqlite_utils.Database) -> None:
    """Who approved a request so far, for flows that need several approvals (a JSON list, in order),
    and the identity and system its grant will be made for, shown while it waits (a JSON object)."""
    db.execute("ALTER TABLE requests ADD COLUMN approvals TEXT NOT NULL DEFAULT '[]'")
    db.execute("ALTER TABLE requests ADD COLUMN grant_to TEXT NOT NULL DEFAULT '{}'")


@_migration
def m009_request_reminders(db: sqlite_utils.Database) -> None:
    """Reminders and escalation of pending requests: what was already posted, so a restart neither
    repeats nor skips one (the schedule itself follows from the request's creation and its flow)."""
    db.execute(
        """
        CREATE TABLE request_reminders (
            request_id   TEXT PRIMARY KEY,
            sent         INTEGER NOT NULL DEFAULT 0 CHECK (sent >= 0),
            last_at      TEXT,
            escalated_at TEXT
        )
        """
    )


@_migration
def m010_audit_event_chain(db: sqlite_utils.Database) -> None:
    """The documented audit event (docs/audit.md): event_id, type, via, flow, target, actor details,
    reason, fields and the hash chain; rows written before it are chained here, in seq order."""
    for column in (
        "event_id",
        "type",
        "via",
        "flow",
        "target",
        "actor_email",
        "actor_name",
        "reason",
        "fields",
        "prev_hash",
        "hash",
    ):
        db.execute(f"ALTER TABLE audit_events ADD COLUMN {column} TEXT")
    # The rows already written get their derived columns and their place in the chain. The UPDATE
    # trigger is lifted for this one transaction only (a failure rolls the DROP back too).
    db.execute("DROP TRIGGER audit_events_no_update")
    _chain_existing_rows(db)
    db.execute(
        """
        CREATE TRIGGER audit_events_no_update BEFORE UPDATE ON audit_events
        BEGIN SELECT RAISE(ABORT, 'audit_events is append-only: UPDATE refused'); END
        """
    )
    db.execute("CREATE UNIQUE INDEX audit_events_event_id ON audit_events (event_id)")
    db.execute("CREATE INDEX audit_events_flow_at ON audit_events (flow, at)")


def _chain_existing_rows(db: sqlite_utils.Database) -> None:
    prev, last = GENESIS_HASH, 0
    while True:  # a page at a time: a database with millions of rows is chained in bounded memory
        rows = db.execute(
            "SELECT a.id, a.at, a.request_id, a.actor, a.action, a.status_from, a.status_to, a.detail, "
            "r.flow, r.target, r.requester, r.requester_email FROM audit_events a "
            "LEFT JOIN requests r ON r.id = a.request_id WHERE a.id > ? ORDER BY a.id LIMIT 5000",
            [last],
        ).fetchall()
        if not rows:
            return
        updates = []
        for row in rows:
            seq, at, request_id, actor, action, status_from, status_to, detail_text, flow, target, requester, email = (
                row
            )
            detail = read_detail(detail_text)
            fields = detail.get("fields") if isinstance(detail.get("fields"), dict) else None
            reason = next(
                (v for v in (detail.get("reason"), (fields or {}).get("reason")) if isinstance(v, str) and v), None
            )
            event = StoredEvent(
                seq=seq,
                event_id=event_id_at(at, seq),
                type=event_type(action),
                action=action,
                at=at,
                actor=actor,
                actor_email=email if requester is not None and actor == requester else None,
                actor_name=None,
                via=via_for(actor),
                request_id=request_id,
                flow=flow,
                target=target,
                status_from=status_from,
                status_to=status_to,
                reason=reason,
                fields=fields,
                detail=detail,
                prev_hash=prev,
                hash="",
            )
            prev = event.computed_hash()
            fields_text = None if fields is None else json.dumps(fields, ensure_ascii=False, separators=(",", ":"))
            updates.append(
                (event.event_id, event.type, event.via, flow, target, event.actor_email, reason, fields_text)
                + (event.prev_hash, prev, seq)
            )
        db.conn.executemany(
            "UPDATE audit_events SET event_id = ?, type = ?, via = ?, flow = ?, target = ?, actor_email = ?, "
            "reason = ?, fields = ?, prev_hash = ?, hash = ? WHERE id = ?",
            updates,
        )
        last = rows[-1][0]


@_migration
def m011_audit_destinations(db: sqlite_utils.Database) -> None:
    """One delivery cursor per audit destination: how far it has got in the trail, and how it is going."""
    # The trail itself is the outbox: every audit row commits with the change it records, and a
    # destination's `position` is the seq of the last event it has acknowledged.
    db.execute(
        """
        CREATE TABLE audit_cursors (
            destination     TEXT PRIMARY KEY,
            position        INTEGER NOT NULL DEFAULT 0 CHECK (position >= 0),
            first_seen_at   TEXT NOT NULL,
            delivered_at    TEXT,
            failures        INTEGER NOT NULL DEFAULT 0,
            last_error      TEXT,
            last_error_at   TEXT,
            alerted_at      TEXT
        )
        """
    )


@_migration
def m012_drift(db: sqlite_utils.Database) -> None:
    """Drift reconciliation: what each run found (remembered so each finding is alerted once), and when
    each flow last ran and whether its listings are failing (so the schedule survives restarts)."""
    db.execute(
        """
        CREATE TABLE drift_findings (
            id               INTEGER PRIMARY KEY AUTOINCREMENT,
            access_key       TEXT NOT NULL,
            flow             TEXT NOT NULL,
            target           TEXT NOT NULL,
            holder_id        TEXT NOT NULL,
            holder_name      TEXT NOT NULL,
            holder_kind      TEXT NOT NULL DEFAULT 'user',
            found_at         TEXT NOT NULL,
            alerted_at       TEXT,
            removal_attempts INTEGER NOT NULL DEFAULT 0,
            last_error       TEXT,
            resolved_at      TEXT,
            resolution       TEXT
        )
        """
    )
    # One open finding per holder of an access; once resolved, the same holder coming back is a new one.
    db.execute(
        "CREATE UNIQUE INDEX drift_findings_open ON drift_findings (access_key, holder_id) WHERE resolved_at IS NULL"
    )
    db.execute(
        """
        CREATE TABLE reconcile_state (
            flow          TEXT NOT NULL,
            target        TEXT NOT NULL DEFAULT '',
            last_run_at   TEXT,
            failing_since TEXT,
            last_error    TEXT,
            PRIMARY KEY (flow, target)
        )
        """
    )


@_migration
def m013_requests_flow_target(db: sqlite_utils.Database) -> None:
    """Grants by flow and target: the access review reads one target at a time, reconciliation too."""
    db.execute("CREATE INDEX requests_flow_target ON requests (flow, target, status)")


@_migration
def m014_api_tokens(db: sqlite_utils.Database) -> None:
    """API tokens: only each token's SHA-256 is stored, never the token itself."""
    db.execute(
        """
        CREATE TABLE api_tokens (
            id           TEXT PRIMARY KEY,
            name         TEXT NOT NULL UNIQUE,
            slack_user   TEXT NOT NULL,
            scopes       TEXT NOT NULL,
            digest       TEXT NOT NULL UNIQUE,
            created_at   TEXT NOT NULL,
            created_by   TEXT NOT NULL,
            expires_at   TEXT,
            revoked_at   TEXT,
            revoked_by   TEXT,
            last_used_at TEXT
        )
        """
    )


@_migration
def m015_requests_by_age(db: sqlite_utils.Database) -> None:
    """Newest requests first (the API's listing) without sorting the whole table."""
    db.execute("CREATE INDEX requests_created ON requests (created_at)")


@_migration
def m017_leases(db: sqlite_utils.Database) -> None:
    """Leases: which process is acting on a request, an access or a periodic job, until when (replicas)."""
    # SQLite runs one bot per file, so its leases are only ever this process's; the table exists on
    # both engines so that the repositories and their tests are the same (storage/leases.py).
    db.execute(
        """
        CREATE TABLE leases (
            name        TEXT PRIMARY KEY,
            owner       TEXT NOT NULL,
            lease_until TEXT NOT NULL
        )
        """
    )
    db.execute("CREATE INDEX leases_owner ON leases (owner)")


def applied_migrations(db: sqlite_utils.Database) -> list[str]:
    """Names of the migrations already applied to `db`, in order."""
    return [m.name for m in MIGRATIONS.applied(db)]


def apply_migrations(db: sqlite_utils.Database) -> list[str]:
    """Apply pending migrations and return their names; refuse a database from a newer jitbot."""
    unknown = [name for name in applied_migrations(db) if name not in KNOWN_MIGRATIONS]
    if unknown:
        raise StartupError(
            "the database was written by a newer jitbot (unknown schema migrations: "
            f"{', '.join(unknown)}); upgrade jitbot or point JITBOT_DB at another file"
        )
    pending = [m.name for m in MIGRATIONS.pending(db)]
    MIGRATIONS.apply(db)
    return pending
