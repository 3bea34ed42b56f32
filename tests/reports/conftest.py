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
        "straddles": "on time",
        "granting": "granting",
        "carol": "on time",
        "other_target": "on time",
    }
    requests = [
        grant("on_time", SINCE + H, 2),
        grant("early", SINCE + day, 4, ended_at=SINCE + day + H),
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
        grant("extended", SINCE + 3 * day, 1),
        grant("straddles", SINCE - 2 * H, 4),  # began before the period, ended in it
        grant("granting", NOW - timedelta(minutes=1), 1, status=S.APPROVED, granted_at=None, ended_at=None),
        grant("carol", SINCE + 4 * day, 1, requester="U_CAROL", requester_email="carol@example.com"),
        grant("other_target", SINCE + 4 * day, 1, target="staging"),
        # Not in the period, or never access at all:
        grant("before", SINCE - day, 1),
        grant("after", UNTIL + H, 1),
        grant("denied", SINCE + day, 1, status=S.DENIED, granted_at=None, expires_at=None, ended_at=None),
        grant("pending", SINCE + day, 1, status=S.PENDING, decided_by=None, granted_at=None, ended_at=None),
    ]
    return requests, expected


@pytest.fixture(params=["sqlite", "postgresql"])
async def review_db(tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[ReviewDb]:
    path: Path | str = tmp_path / "jitbot.db" if request.param == "sqlite" else request.getfixturevalue("postgres_dsn")
    store = await Store.open(path)
    requests, expected = review_requests()
    created = AuditEvent(at=SINCE, actor="U_ALICE", action="request.created")
    await RequestRepo(store).create_many((r, created) for r in requests)
    audit = AuditLog(store)
    # Alice ended "early" herself; "on_time" was revoked by the bot at its end.
    await audit.append(
        AuditEvent(at=SINCE + timedelta(days=1) + H, actor="U_ALICE", action="access.revoked", request_id="early")
    )
    await audit.append(AuditEvent(at=SINCE + 3 * H, actor="system", action="access.revoked", request_id="on_time"))
    await audit.append(
        AuditEvent(at=SINCE + timedelta(days=3), actor="U_BOB", action="access.extended", request_id="extended")
    )
    try:
        yield ReviewDb(store, path, expected)
    finally:
        await store.close()
