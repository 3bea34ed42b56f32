"""A database holding one grant of every kind the access review tells apart, around one review period."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from core.models import AccessRequest, AuditEvent
from core.models import RequestStatus as S
from storage import AuditLog, RequestRepo, Store
from tests.databases import TestDatabases

SINCE = datetime(2026, 11, 1, tzinfo=UTC)
UNTIL = SINCE + timedelta(days=7)
NOW = SINCE + timedelta(days=6)
H = timedelta(hours=1)


def grant(request_id: str, start: datetime, hours: float, **overrides: object) -> AccessRequest:
    """A request approved by Bob at `start` for `hours`, revoked on time unless overridden."""
    end = start + timedelta(hours=hours)
    base = AccessRequest(
        id=request_id,
        flow="db_access",
        target="prod_admin",
        requester="U_ALICE",
        requester_email="alice@example.com",
        created_at=start - timedelta(minutes=5),
        duration_seconds=int(hours * 3600),
        status=S.REVOKED,
        fields={"reason": f"ticket for {request_id}", "duration": f"{hours}h"},
        decided_by="U_BOB",
        decided_at=start,
        granted_at=start,
        expires_at=end,
        ended_at=end,
        grant_spec={"identity": "alice@example.com"},
    )
    return replace(base, **overrides)  # type: ignore[arg-type]


@dataclass
class ReviewDb:
    store: Store
    path: Path | str  # what JITBOT_DB is set to: a SQLite file, or a postgresql:// URL
    in_period: dict[str, str]  # request id -> expected outcome


def review_requests() -> tuple[list[AccessRequest], dict[str, str]]:
    """Every kind of grant, plus requests the review must leave out."""
    day = timedelta(days=1)
    expected = {
        "on_time": "on time",
        "early": "early",
        "failed": "failed",
        "active": "active",
        "overdue": "overdue",
        "extended": "extended",
        "extension": "on time",
        "late_extension": "on time",
        "gate": "on time",
        "straddles": "on time",
        "granting": "granting",
        "carol": "on time",
        "other_target": "on time",
    }
    requests = [
        grant("on_time", SINCE + H, 2),
        # Revoke now moves the stored end to the moment it was asked for (its audit row keeps the plan).
        grant(
            "early",
            SINCE + day,
            4,
            expires_at=SINCE + day + H,
            ended_at=SINCE + day + H,
            revoked_by="U_ALICE",
            end_reason="ended early by @alice",
        ),
        grant(
            "failed",
            SINCE + 2 * day,
            1,
            status=S.FAILED,
            granted_at=None,
            ended_at=None,
            failure_reason="Okta refused: E0000006",
        ),
        grant("active", NOW - H, 2, status=S.GRANTED, ended_at=None),
        grant("overdue", SINCE + 5 * day, 1, status=S.GRANTED, ended_at=None, last_error="Okta answered 503"),
        # An extension approved 30 minutes in took the access over (no gap): the old row ends "handed over".
        grant(
            "extended",
            SINCE + 3 * day,
            1,
            ended_at=SINCE + 3 * day + H / 2,
            end_reason="extended by request extension",
        ),
        grant(
            "extension",
            SINCE + 3 * day + H / 2,
            1.5,
            extends="extended",
            expires_at=SINCE + 3 * day + 2 * H,
            ended_at=SINCE + 3 * day + 2 * H,
            grant_spec={"identity": "alice@example.com", "held_since": (SINCE + 3 * day).isoformat()},
        ),
        # Asked as an extension of "carol", approved after carol's access ended: an ordinary grant.
        grant("late_extension", SINCE + 4 * day + 2 * H, 1, requester="U_CAROL", extends="carol"),
        # An approval-only flow: a window, no system.
        grant("gate", SINCE + 4 * day, 1, flow="deploy_gate", target="deploy_gate", grant_spec={"approval_only": True}),
        grant("straddles", SINCE - 2 * H, 4),  # began before the period, ended in it
        grant("granting", NOW - timedelta(minutes=1), 1, status=S.APPROVED, granted_at=None, ended_at=None),
        grant("carol", SINCE + 4 * day, 1, requester="U_CAROL", requester_email="carol@example.com"),
        grant("other_target", SINCE + 4 * day, 1, target="staging"),
        # Not in the period, or never access at all:
        grant("before", SINCE - day, 1),
        grant("after", UNTIL + H, 1),
        grant("denied", SINCE + day, 1, status=S.DENIED, granted_at=None, expires_at=None, ended_at=None),
        grant("pending", SINCE + day, 1, status=S.PENDING, decided_by=None, granted_at=None, ended_at=None),
        grant("cancelled", SINCE + day, 1, status=S.CANCELLED, granted_at=None, expires_at=None, decided_by="U_ALICE"),
    ]
    return requests, expected


@pytest.fixture
async def review_db(databases: TestDatabases) -> AsyncIterator[ReviewDb]:
    path = databases.where()
    store = await Store.open(path)
    requests, expected = review_requests()
    created = AuditEvent(at=SINCE, actor="U_ALICE", action="request.created")
    await RequestRepo(store).create_many((r, created) for r in requests)
    audit = AuditLog(store)
    # The rows core.early_end and core.extension write (docs/audit.md), as the review reads them.
    day = timedelta(days=1)
    planned = (SINCE + day + 4 * H).isoformat()
    events = [
        AuditEvent(
            at=SINCE + day + H,
            actor="U_ALICE",
            action="access.revoke_requested",
            request_id="early",
            detail={"via": "slack", "reason": "ended early by @alice", "planned_end": planned},
        ),
        AuditEvent(at=SINCE + day + H, actor="system", action="access.revoked", request_id="early"),
        AuditEvent(at=SINCE + 3 * H, actor="system", action="access.revoked", request_id="on_time"),
        AuditEvent(
            at=SINCE + 3 * day + H / 2,
            actor="system",
            action="access.extended",
            request_id="extension",
            detail={
                "extends": "extended",
                "previous_end": (SINCE + 3 * day + H).isoformat(),
                "expires_at": (SINCE + 3 * day + 2 * H).isoformat(),
            },
        ),
        AuditEvent(
            at=SINCE + 3 * day + H / 2,
            actor="system",
            action="access.handed_over",
            request_id="extended",
            detail={"access_kept_by": "extension"},
        ),
    ]
    for event in events:
        await audit.append(event)
    try:
        yield ReviewDb(store, path, expected)
    finally:
        await store.close()
