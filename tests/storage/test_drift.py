"""DriftRepo: findings and their audit rows written together, one open finding per holder, failure streaks."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta

import pytest

from core.models import AuditEvent
from core.strategy import Holder
from storage import AuditLog, Store
from storage.drift import DriftRepo

T0 = datetime(2026, 11, 21, 12, tzinfo=UTC)
MALLORY = Holder(id="00u9", name="mallory@example.com")


def event(action: str) -> AuditEvent:
    return AuditEvent(at=T0, actor="system", action=action, detail={"holder": MALLORY.name})


@pytest.fixture
async def store(tmp_path):
    store = await Store.open(tmp_path / "jitbot.db")
    yield store
    await store.close()


async def test_a_holder_has_one_open_finding_and_after_it_is_resolved_a_new_one(store) -> None:
    drift = DriftRepo(store)
    first = await drift.add_finding("okta:o:00g1", "okta_prod", "prod", MALLORY, T0, event("drift.found"))
    assert (await drift.open_findings("okta:o:00g1"))[MALLORY.id].id == first.id
    with pytest.raises(sqlite3.IntegrityError):  # the partial unique index: one open finding per holder
        await drift.add_finding("okta:o:00g1", "okta_prod", "prod", MALLORY, T0, event("drift.found"))
    await drift.resolve([first], T0 + timedelta(hours=1), "gone", "system")
    assert await drift.open_findings("okta:o:00g1") == {}
    second = await drift.add_finding("okta:o:00g1", "okta_prod", "prod", MALLORY, T0, event("drift.found"))
    assert second.id != first.id
    actions = [e.action for e in await AuditLog(store).list()]
    assert actions == ["drift.found", "drift.resolved", "drift.found"], "the refused insert left no audit row"


async def test_a_run_of_failed_listings_is_audited_once_and_its_end_once(store) -> None:
    drift = DriftRepo(store)
    assert await drift.listing_failed("f", "t", T0, "401", event("drift.listing_failed"))
    assert not await drift.listing_failed("f", "t", T0 + timedelta(hours=1), "401", event("drift.listing_failed"))
    assert await drift.listing_succeeded("f", "t", T0, event("drift.listing_recovered"))
    assert not await drift.listing_succeeded("f", "t", T0, event("drift.listing_recovered"))
    assert [e.action for e in await AuditLog(store).list()] == ["drift.listing_failed", "drift.listing_recovered"]


async def test_the_last_run_of_a_flow_is_remembered(store) -> None:
    drift = DriftRepo(store)
    assert await drift.last_run("okta_prod") is None
    await drift.record_run("okta_prod", T0)
    await drift.record_run("okta_prod", T0 + timedelta(hours=1))
    assert await drift.last_run("okta_prod") == T0 + timedelta(hours=1)
    assert await drift.last_run("other") is None
