from __future__ import annotations

import asyncio
import sqlite3
from datetime import timedelta, timezone

import pytest

from core.errors import InvalidTransition, RequestNotFound
from core.models import RequestStatus as S
from core.secrets import Secret
from core.state import TRANSITIONS

from .conftest import T0, event, granted, make_request

EVERY_FIELD = make_request(
    "r-full",
    status=S.GRANTED,
    fields={"reason": "ünïcode ✓", "count": 3, "flags": [True, False], "nested": {"a": None}},
    message_ts="1700000000.000100",
    approvers=("U0A", "U0B"),
    decided_by="U0A",
    decided_at=T0 + timedelta(minutes=1),
    decision_reason="looks fine",
    timeout_at=T0 + timedelta(hours=24),
    granted_at=T0 + timedelta(minutes=1, microseconds=7),
    expires_at=T0 + timedelta(hours=1, minutes=1),
    ended_at=None,
    grant_state={"membership_id": "m-1"},
    failure_reason=None,
    revoke_attempts=2,
    next_attempt_at=T0 + timedelta(hours=1, minutes=2),
    last_error="429 from Okta",
)


async def test_every_field_round_trips(repo):
    await repo.create(EVERY_FIELD, event())
    assert await repo.get("r-full") == EVERY_FIELD
    loaded = await repo.get("r-full")
    assert isinstance(loaded.approvers, tuple)
    assert loaded.expires_at.tzinfo is not None and loaded.expires_at.utcoffset() == timedelta(0)


async def test_defaults_round_trip(repo):
    request = make_request("r-min", fields={}, requester_email=None, approval_channel=None)
    await repo.create(request, event())
    assert await repo.get("r-min") == request


async def test_get_unknown_raises_request_not_found(repo):
    with pytest.raises(RequestNotFound):
        await repo.get("nope")


async def test_create_writes_its_audit_row_and_refuses_duplicates(repo, audit_log):
    await repo.create(make_request("r1"), event("request.created", detail={"flow": "db_access"}))
    with pytest.raises(sqlite3.IntegrityError):
        await repo.create(make_request("r1"), event("request.created"))
    trail = await audit_log.for_request("r1")
    assert [(e.action, e.request_id, e.status_to, e.detail) for e in trail] == [
        ("request.created", "r1", "pending", {"flow": "db_access"})
    ]


async def test_create_with_a_bad_audit_row_stores_nothing(repo):
    with pytest.raises(sqlite3.IntegrityError):
        await repo.create(make_request("r1"), event(actor=None))
    with pytest.raises(RequestNotFound):
        await repo.get("r1")


async def test_transition_applies_changes_and_audits_from_and_to(repo, audit_log):
    await repo.create(make_request("r1"), event())
    until = T0 + timedelta(hours=1)
    approved = await repo.transition(
        "r1",
        S.PENDING,
        S.APPROVED,
        changes={"decided_by": "U0A", "decided_at": T0, "expires_at": until},
        audit=event("request.approved", actor="U0A", detail={"until": until}),
    )
    assert (approved.status, approved.decided_by, approved.expires_at) == (S.APPROVED, "U0A", until)
    assert await repo.get("r1") == approved
    last = (await audit_log.for_request("r1"))[-1]
    assert (last.action, last.actor, last.status_from, last.status_to) == (
        "request.approved",
        "U0A",
        "pending",
        "approved",
    )
    assert last.detail == {"until": "2026-11-21T16:00:00.000000Z"}


async def test_expected_statuses_may_be_a_collection_but_each_must_be_a_legal_source(repo):
    await repo.create(make_request("r1"), event())
    with pytest.raises(InvalidTransition) as info:
        await repo.transition("r1", {S.PENDING, S.APPROVED}, S.DENIED, audit=event("request.denied"))
    assert (info.value.current, info.value.requested) == ("approved", "denied")
    assert (await repo.get("r1")).status is S.PENDING
    result = await repo.transition("r1", [S.PENDING], S.DENIED, audit=event("request.denied"))
    assert result.status is S.DENIED


async def test_concurrent_approvals_win_exactly_once(repo, audit_log):
    await repo.create(make_request("r1"), event())
    results = await asyncio.gather(
        *(
            repo.transition(
                "r1",
                S.PENDING,
                S.APPROVED,
                changes={"decided_by": f"U{i}"},
                audit=event("request.approved", actor=f"U{i}"),
            )
            for i in range(20)
        ),
        return_exceptions=True,
    )
    winners = [r for r in results if not isinstance(r, BaseException)]
    losers = [r for r in results if isinstance(r, BaseException)]
    assert len(winners) == 1
    assert len(losers) == 19 and all(isinstance(e, InvalidTransition) for e in losers)
    assert {(e.current, e.requested) for e in losers} == {("approved", "approved")}
    approvals = [e for e in await audit_log.for_request("r1") if e.status_to == "approved"]
    assert len(approvals) == 1 and approvals[0].actor == winners[0].decided_by
    assert (await repo.get("r1")).decided_by == winners[0].decided_by


FORBIDDEN_EDGES = [(a, b) for a in S for b in S if b not in TRANSITIONS[a]]


@pytest.mark.parametrize("current, requested", FORBIDDEN_EDGES, ids=[f"{a}->{b}" for a, b in FORBIDDEN_EDGES])
async def test_forbidden_edges_are_refused_without_writing(repo, audit_log, current, requested):
    await repo.create(make_request("r1", status=current), event())
    with pytest.raises(InvalidTransition) as info:
        await repo.transition("r1", current, requested, audit=event("x"))
    assert (info.value.current, info.value.requested) == (current.value, requested.value)
    assert (await repo.get("r1")).status is current
    assert len(await audit_log.for_request("r1")) == 1


async def test_losing_cas_reports_the_status_found(repo):
    await repo.create(make_request("r1"), event())
    await repo.transition("r1", S.PENDING, S.DENIED, audit=event("request.denied"))
    with pytest.raises(InvalidTransition) as info:
        await repo.transition("r1", S.PENDING, S.APPROVED, audit=event("request.approved"))
    assert info.value.current == "denied"
    assert "already denied" in info.value.user_message


async def test_transition_of_unknown_request_raises_not_found(repo):
    with pytest.raises(RequestNotFound):
        await repo.transition("nope", S.PENDING, S.APPROVED, audit=event())


async def test_failed_audit_insert_rolls_back_the_status_change(repo, audit_log):
    await repo.create(make_request("r1"), event())
    with pytest.raises(sqlite3.IntegrityError):
        await repo.transition(
            "r1", S.PENDING, S.APPROVED, changes={"decided_by": "U0A"}, audit=event("request.approved", actor=None)
        )
    request = await repo.get("r1")
    assert (request.status, request.decided_by) == (S.PENDING, None)
    assert [e.action for e in await audit_log.for_request("r1")] == ["request.created"]


async def test_bad_changes_are_refused_before_touching_the_database(repo):
    await repo.create(make_request("r1"), event())
    for changes in ({"status": "granted"}, {"id": "r2"}, {"no_such_field": 1}, {"requester": "U9"}):
        with pytest.raises(ValueError):
            await repo.transition("r1", S.PENDING, S.APPROVED, changes=changes, audit=event())
    with pytest.raises(ValueError, match="naive"):
        await repo.transition(
            "r1", S.PENDING, S.APPROVED, changes={"decided_at": T0.replace(tzinfo=None)}, audit=event()
        )
    assert (await repo.get("r1")).status is S.PENDING


async def test_audit_about_another_request_is_refused(repo):
    await repo.create(make_request("r1"), event())
    with pytest.raises(ValueError, match="r2"):
        await repo.transition("r1", S.PENDING, S.APPROVED, audit=event(request_id="r2"))


async def test_update_changes_fields_and_optionally_audits(repo, audit_log):
    await repo.create(granted("r1", T0), event())
    retry_at = T0 + timedelta(seconds=5)
    updated = await repo.update(
        "r1",
        {"revoke_attempts": 1, "next_attempt_at": retry_at, "last_error": "503"},
        audit=event("revoke.failed", actor="jitbot", detail={"error": "503"}),
        expected_status=S.GRANTED,
    )
    assert (updated.status, updated.revoke_attempts, updated.next_attempt_at, updated.last_error) == (
        S.GRANTED,
        1,
        retry_at,
        "503",
    )
    last = (await audit_log.for_request("r1"))[-1]
    assert (last.action, last.status_from, last.status_to) == ("revoke.failed", None, None)
    await repo.update("r1", {"message_ts": "1.2"})
    assert (await repo.get("r1")).message_ts == "1.2"
    assert len(await audit_log.for_request("r1")) == 2


async def test_update_guarded_by_status_refuses_when_status_moved(repo, audit_log):
    await repo.create(granted("r1", T0), event())
    await repo.transition("r1", S.GRANTED, S.REVOKED, audit=event("revoke.ok"))
    with pytest.raises(InvalidTransition) as info:
        await repo.update("r1", {"revoke_attempts": 5}, audit=event("revoke.failed"), expected_status=S.GRANTED)
    assert info.value.current == "revoked"
    assert (await repo.get("r1")).revoke_attempts == 0
    assert [e.action for e in await audit_log.for_request("r1")] == ["request.created", "revoke.ok"]


async def test_update_cannot_change_status(repo):
    await repo.create(make_request("r1"), event())
    with pytest.raises(ValueError, match="status"):
        await repo.update("r1", {"status": S.APPROVED})


async def test_a_bulk_insert_with_one_bad_row_writes_nothing(repo, audit_log):
    good, bad = make_request("r1"), make_request("r2", fields={"reason": object()})  # not storable
    with pytest.raises(TypeError):
        await repo.create_many([(good, event()), (bad, event())])
    with pytest.raises(RequestNotFound):
        await repo.get("r1")
    assert await audit_log.list() == []


async def test_due_revocations_honour_next_attempt_at(repo):
    now = T0 + timedelta(hours=2)
    await repo.create_many(
        [
            (granted("due", now - timedelta(minutes=5)), event()),
            (granted("due-exactly-now", now), event()),
            (granted("not-yet", now + timedelta(microseconds=1)), event()),
            (granted("retry-due", now - timedelta(minutes=9), next_attempt_at=now - timedelta(seconds=1)), event()),
            (granted("retry-later", now - timedelta(minutes=9), next_attempt_at=now + timedelta(seconds=30)), event()),
            (make_request("revoked", status=S.REVOKED, expires_at=now - timedelta(hours=1)), event()),
            (make_request("approved", status=S.APPROVED, expires_at=now - timedelta(hours=1)), event()),
        ]
    )
    due = await repo.list_due_revocations(now)
    assert [r.id for r in due] == ["retry-due", "due", "due-exactly-now"]
    later = await repo.list_due_revocations(now + timedelta(seconds=30))
    assert [r.id for r in later] == ["retry-due", "retry-later", "due", "due-exactly-now", "not-yet"]


async def test_range_queries_are_correct_across_offsets_and_precisions(repo):
    ist = timezone(timedelta(hours=5, minutes=30))
    pst = timezone(timedelta(hours=-8))
    end = T0 + timedelta(hours=3)  # 18:00:00Z
    await repo.create_many(
        [
            (granted("a-whole-second", end - timedelta(seconds=1)), event()),
            (granted("b-ist-just-before", (end - timedelta(microseconds=1)).astimezone(ist)), event()),
            (granted("c-pst-exactly", end.astimezone(pst)), event()),
            (granted("d-after-with-micro", end + timedelta(microseconds=500)), event()),
            (granted("e-next-day-early", (end + timedelta(hours=20)).astimezone(ist)), event()),
        ]
    )
    before = await repo.list_due_revocations((end - timedelta(microseconds=1)).astimezone(ist))
    assert [r.id for r in before] == ["a-whole-second", "b-ist-just-before"]
    due = await repo.list_due_revocations(end.astimezone(pst))
    assert [r.id for r in due] == ["a-whole-second", "b-ist-just-before", "c-pst-exactly"]
    stored = await repo._store.read(
        lambda db: [r[0] for r in db.execute("SELECT expires_at FROM requests ORDER BY id")]
    )
    assert all(len(s) == 27 and s.endswith("Z") for s in stored)
    assert stored[2] == "2026-11-21T18:00:00.000000Z"


async def test_pending_timed_out_and_list_by_status(repo):
    now = T0 + timedelta(hours=24)
    await repo.create_many(
        [
            (make_request("p-old", timeout_at=now - timedelta(seconds=1)), event()),
            (make_request("p-now", timeout_at=now, created_at=T0 + timedelta(seconds=1)), event()),
            (
                make_request("p-fresh", timeout_at=now + timedelta(hours=1), created_at=T0 + timedelta(seconds=2)),
                event(),
            ),
            (make_request("p-no-timeout", created_at=T0 + timedelta(seconds=3)), event()),
            (make_request("approved", status=S.APPROVED, timeout_at=now - timedelta(hours=1)), event()),
        ]
    )
    assert [r.id for r in await repo.list_pending_timed_out(now)] == ["p-old", "p-now"]
    assert [r.id for r in await repo.list_by_status(S.PENDING)] == ["p-old", "p-now", "p-fresh", "p-no-timeout"]
    assert {r.id for r in await repo.list_by_status(S.APPROVED, S.PENDING)} == {
        "p-old",
        "p-now",
        "p-fresh",
        "p-no-timeout",
        "approved",
    }
    with pytest.raises(ValueError):
        await repo.list_by_status()


async def test_count_by_status_and_granted_schedule(repo):
    end = T0 + timedelta(hours=1)
    await repo.create_many(
        [
            (granted("g1", end + timedelta(minutes=1)), event()),
            (granted("g2", end, next_attempt_at=end + timedelta(seconds=10)), event()),
            (make_request("p1"), event()),
        ]
    )
    counts = await repo.count_by_status()
    assert counts[S.GRANTED] == 2 and counts[S.PENDING] == 1 and counts[S.REVOKED] == 0
    assert set(counts) == set(S)
    schedule = await repo.list_granted_schedule()
    assert [tuple(s) for s in schedule] == [
        ("g2", end, end + timedelta(seconds=10)),
        ("g1", end + timedelta(minutes=1), None),
    ]
    # g2 expires at `end` but its retry is not due until 10 s later, so a window ending at `end`
    # must not include it: the timer would fire before the back-off allows.
    assert await repo.list_granted_schedule(end) == []
    assert [s.id for s in await repo.list_granted_schedule(end + timedelta(seconds=10))] == ["g2"]
    assert [s.id for s in await repo.list_granted_schedule(end + timedelta(minutes=1))] == ["g2", "g1"]


async def test_pending_timeouts_for_arming(repo):
    await repo.create_many(
        [
            (make_request("p1", timeout_at=T0 + timedelta(hours=2)), event()),
            (make_request("p2", timeout_at=T0 + timedelta(hours=1)), event()),
            (make_request("p-none"), event()),
            (make_request("denied", status=S.DENIED, timeout_at=T0), event()),
        ]
    )
    assert [tuple(p) for p in await repo.list_pending_timeouts()] == [
        ("p2", T0 + timedelta(hours=1)),
        ("p1", T0 + timedelta(hours=2)),
    ]
    assert [p.id for p in await repo.list_pending_timeouts(T0 + timedelta(hours=1))] == ["p2"]


async def test_secret_in_error_text_is_scrubbed_before_storage(repo, audit_log, secrets):
    token = Secret("sk-live-do-not-store-1234")
    secrets.register(token.reveal())
    await repo.create(granted("r1", T0), event())
    await repo.update(
        "r1",
        {"last_error": f"401 with token {token.reveal()}"},
        audit=event("revoke.failed", detail={"error": f"Bearer {token.reveal()}", "token": token}),
    )
    assert (await repo.get("r1")).last_error == "401 with token ***"
    detail = (await audit_log.for_request("r1"))[-1].detail
    assert detail == {"error": "Bearer ***", "token": "***"}
    raw = await repo._store.read(lambda db: db.execute("SELECT detail FROM audit_events").fetchall())
    assert all(token.reveal() not in row[0] for row in raw)


async def test_live_grants_come_grouped_and_counted_and_a_groups_ids_on_demand(repo):
    # Start-up reads groups (a million live grants are a handful of rows) and the ids of a group only
    # when its flow changed since the grant.
    spec_a, spec_b = {"identity": "a@example.com", "role": "admin"}, {"identity": "b@example.com", "role": "admin"}
    rows = [
        granted("g1", T0 + timedelta(hours=1), grant_spec=spec_a),
        granted("g2", T0 + timedelta(hours=2), grant_spec=spec_a),
        granted("g3", T0 + timedelta(hours=3), grant_spec=spec_b),
        make_request("a1", status=S.APPROVED, grant_spec=spec_b),
        make_request("f1", status=S.FAILED, grant_spec=spec_a, next_attempt_at=T0),  # clean-up due: live
        make_request("f2", status=S.FAILED, grant_spec=spec_a),  # nothing left to clean up
        make_request("p1", grant_spec=spec_a),  # pending: holds nothing
    ]
    await repo.create_many((r, event(request_id=r.id)) for r in rows)
    groups = sorted(await repo.live_grant_specs(), key=lambda g: g.spec["identity"])
    assert [(g.flow, g.target, g.spec, g.grants) for g in groups] == [
        ("db_access", "prod_admin", spec_a, 3),
        ("db_access", "prod_admin", spec_b, 2),
    ]
    assert [await repo.live_grant_ids(g) for g in groups] == [["f1", "g1", "g2"], ["a1", "g3"]]
