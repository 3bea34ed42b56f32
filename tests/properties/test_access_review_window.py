"""Properties of the access review: whatever the requests, each grant whose window overlaps the
period is in the review exactly once (CSV, and one bar in the HTML timeline), nothing else is, and
the timeline has one lane per person of each target."""

from __future__ import annotations

import csv
import io
import re
from collections import Counter
from datetime import UTC, datetime, timedelta

import sqlite_utils
from hypothesis import given
from hypothesis import strategies as st

from core.models import AccessRequest
from core.models import RequestStatus as S
from core.secrets import SecretRegistry
from reports.access import write_csv, write_html
from storage.access_review import review_grants, review_targets
from storage.migrations import apply_migrations
from storage.request_rows import encoders, request_to_values
from storage.requests import _INSERT
from tests.properties.conftest import property_settings

BASE = datetime(2026, 11, 1, tzinfo=UTC)
HELD = {S.APPROVED, S.GRANTED, S.REVOKED, S.FAILED}


@st.composite
def a_request(draw: st.DrawFn, index: int) -> AccessRequest:
    status = draw(st.sampled_from(list(S)))
    decided = BASE + timedelta(hours=draw(st.integers(0, 200)))
    granted = (
        None
        if status in (S.PENDING, S.DENIED, S.EXPIRED, S.FAILED)
        else draw(st.one_of(st.none(), st.just(decided + timedelta(minutes=draw(st.integers(0, 5))))))
    )
    if status is S.APPROVED:
        granted = None
    hours = draw(st.integers(1, 48))
    ended = None
    if status is S.REVOKED:
        ended = (granted or decided) + timedelta(minutes=draw(st.integers(0, hours * 60 + 30)))
    elif status in (S.DENIED, S.EXPIRED):
        ended = decided
    return AccessRequest(
        id=f"r{index:03d}",
        flow=draw(st.sampled_from(["db", "aws"])),
        target=draw(st.sampled_from(["prod", "staging <b>"])),
        requester=draw(st.sampled_from(["U1", "U2", "U3"])),
        created_at=decided - timedelta(minutes=1),
        duration_seconds=hours * 3600,
        status=status,
        decided_by=None if status is S.PENDING else "U_BOB",
        decided_at=None if status is S.PENDING else decided,
        granted_at=granted,
        expires_at=None if status in (S.PENDING, S.DENIED, S.EXPIRED) else decided + timedelta(hours=hours),
        ended_at=ended,
        fields={"reason": draw(st.text(max_size=8))},
    )


@st.composite
def requests_and_period(draw: st.DrawFn) -> tuple[list[AccessRequest], datetime, datetime]:
    count = draw(st.integers(0, 25))
    requests = [draw(a_request(i)) for i in range(count)]
    since = BASE + timedelta(hours=draw(st.integers(0, 150)))
    until = since + timedelta(hours=draw(st.integers(1, 100)))
    return requests, since, until


def expected(requests: list[AccessRequest], since: datetime, until: datetime) -> set[str]:
    """The review's rule, written independently of its SQL."""
    chosen = set()
    for r in requests:
        if r.status not in HELD:
            continue
        start = r.granted_at or r.decided_at
        end = r.ended_at or (r.decided_at if r.status is S.FAILED else None)
        if start is not None and start < until and (end is None or end >= since):
            chosen.add(r.id)
    return chosen


@property_settings()
@given(requests_and_period())
def test_every_grant_overlapping_the_period_is_reviewed_once_and_nothing_else(case) -> None:
    requests, since, until = case
    db = sqlite_utils.Database(memory=True)
    apply_migrations(db)
    encode = encoders(SecretRegistry())
    db.conn.executemany(_INSERT, [request_to_values(r, encode) for r in requests])
    now = until + timedelta(hours=1)

    out = io.StringIO()
    write_csv(out, review_grants(db, since, until), now=now)
    rows = list(csv.DictReader(io.StringIO(out.getvalue())))
    ids = [row["request_id"] for row in rows]
    assert len(ids) == len(set(ids))
    assert set(ids) == expected(requests, since, until)

    page = io.StringIO()
    count = write_html(
        page,
        review_targets(db, since, until),
        lambda t, lanes: review_grants(db, since, until, flow=t.flow, target=t.target, by_person=lanes),
        since=since,
        until=until,
        now=now,
    )
    html = page.getvalue()
    assert count == len(ids)
    assert sorted(re.findall(r'data-request="([^"]+)"', html)) == sorted(ids)
    by_id = {r.id: r for r in requests}
    people = Counter({(by_id[i].flow, by_id[i].target, by_id[i].requester) for i in ids})
    assert html.count('<text class="lane"') == len(people)
    assert "<b>" not in html  # the target named 'staging <b>' is always escaped
    for row in rows:
        request = by_id[row["request_id"]]
        if row["outcome"] == "early":
            assert request.ended_at is not None and request.expires_at is not None
            assert request.ended_at < request.expires_at
        assert (row["outcome"] == "failed") == (request.status is S.FAILED)
