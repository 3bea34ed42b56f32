from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from core.models import AccessRequest, AuditEvent, RequestStatus
from core.secrets import SecretRegistry
from storage import AuditLog, IdentityStore, RequestRepo, Store
from tests.databases import TestDatabases

T0 = datetime(2026, 11, 21, 15, 0, 0, tzinfo=UTC)


class StepClock:
    """A clock that only moves when told to."""

    def __init__(self, now: datetime = T0) -> None:
        self._now = now

    def now(self) -> datetime:
        return self._now

    def advance(self, delta: timedelta) -> None:
        self._now += delta


def make_request(request_id: str = "r1", **overrides) -> AccessRequest:
    base = AccessRequest(
        id=request_id,
        flow="db_access",
        target="prod_admin",
        requester="U0REQ",
        created_at=T0,
        duration_seconds=3600,
        requester_email="req@example.com",
        fields={"reason": "incident 42", "duration": "1h"},
        approval_channel="C0APPROVALS",
    )
    return replace(base, **overrides)


def granted(request_id: str, expires_at: datetime, **overrides) -> AccessRequest:
    return make_request(
        request_id,
        status=RequestStatus.GRANTED,
        granted_at=expires_at - timedelta(hours=1),
        expires_at=expires_at,
        **overrides,
    )


def event(action: str = "request.created", actor: str = "U0REQ", **overrides) -> AuditEvent:
    return AuditEvent(at=overrides.pop("at", T0), actor=actor, action=action, **overrides)


@pytest.fixture
async def store(databases: TestDatabases):
    """A fresh, migrated store on the session's engine (JITBOT_TEST_DB): SQLite in memory, or a new database on
    the test PostgreSQL."""
    where = ":memory:" if databases.engine == "sqlite" else databases.where()
    s = await Store.open(where)
    yield s
    await s.close()


@pytest.fixture
async def sqlite_store():
    """A fresh SQLite store in memory, for what only SQLite has (PRAGMAs, its migration table)."""
    s = await Store.open(":memory:")
    yield s
    await s.close()


@pytest.fixture
def secrets() -> SecretRegistry:
    """The registry the repositories scrub with, as the runtime's; tests register their secrets here."""
    return SecretRegistry()


@pytest.fixture
def repo(store: Store, secrets: SecretRegistry) -> RequestRepo:
    return RequestRepo(store, secrets)


@pytest.fixture
def audit_log(store: Store, secrets: SecretRegistry) -> AuditLog:
    return AuditLog(store, secrets)


@pytest.fixture
def clock() -> StepClock:
    return StepClock()


@pytest.fixture
def identities(store: Store, clock: StepClock, secrets: SecretRegistry) -> IdentityStore:
    return IdentityStore(store, clock, secrets=secrets)
