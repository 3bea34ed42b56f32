"""The access review as an auditor reads it: every grant of the period once, how it ended, nothing else."""

from __future__ import annotations

import csv
import io
import re
from dataclasses import replace
from datetime import timedelta

from core.access_review import GrantRecord, Outcome, outcome, outcome_detail
from core.models import AuditEvent
from reports.access import write_csv, write_html
from storage import RequestRepo
from storage.access_review import review_grants, review_targets
from tests.reports.conftest import NOW, SINCE, UNTIL, ReviewDb, grant


async def csv_rows(db: ReviewDb) -> list[dict[str, str]]:
    out = io.StringIO()
    await db.store.read(lambda conn: write_csv(out, review_grants(conn, SINCE, UNTIL), now=NOW))
    return list(csv.DictReader(io.StringIO(out.getvalue())))


async def html_page(db: ReviewDb) -> str:
    out = io.StringIO()

    def render(conn) -> int:
        return write_html(
            out,
            review_targets(conn, SINCE, UNTIL),
            lambda t, lanes: review_grants(conn, SINCE, UNTIL, flow=t.flow, target=t.target, by_person=lanes),
            since=SINCE,
            until=UNTIL,
            now=NOW,
        )

    await db.store.read(render)
    return out.getvalue()


async def test_the_csv_lists_every_grant_of_the_period_once_with_how_it_ended(review_db: ReviewDb) -> None:
    rows = await csv_rows(review_db)
    assert {r["request_id"]: r["outcome"] for r in rows} == review_db.in_period
    assert len(rows) == len(review_db.in_period)
    on_time = next(r for r in rows if r["request_id"] == "on_time")
    assert on_time["approved_by"] == "U_BOB"
    assert on_time["reason"] == "ticket for on_time"
    assert on_time["access_from"] == "2026-11-01 01:00:00Z"
    assert on_time["ended_at"] == "2026-11-01 03:00:00Z"
    assert on_time["identity"] == "alice@example.com"


async def test_the_review_says_who_ended_a_grant_early_and_why_a_grant_failed(review_db: ReviewDb) -> None:
    rows = {r["request_id"]: r for r in await csv_rows(review_db)}
    assert rows["early"]["outcome_detail"] == "ended by U_ALICE"
    assert rows["on_time"]["outcome_detail"] == ""  # the bot's own revoke at the end is not "ended by"
    assert rows["failed"]["outcome_detail"] == "Okta refused: E0000006"
    assert rows["overdue"]["outcome_detail"] == "revocation not yet done: Okta answered 503"


async def test_an_extension_marks_the_grant_it_took_over_and_shows_itself_continuing_the_access(
    review_db: ReviewDb,
) -> None:
    rows = {r["request_id"]: r for r in await csv_rows(review_db)}
    assert rows["extended"]["outcome"] == "extended"
    assert rows["extended"]["outcome_detail"] == "extended by request extension"
    assert rows["extension"]["outcome"] == "on time"
    assert rows["extension"]["access_from"] == "2026-11-04 00:30:00Z"
    assert rows["extension"]["outcome_detail"] == (
        "continues the access of request extended (held since 2026-11-04 00:00:00Z, "
        "end moved from 2026-11-04 01:00:00Z to 2026-11-04 02:00:00Z)"
    )


async def test_an_extension_approved_after_the_access_ended_is_an_ordinary_grant_and_extends_nothing(
    review_db: ReviewDb,
) -> None:
    rows = {r["request_id"]: r for r in await csv_rows(review_db)}
    assert rows["carol"]["outcome"] == "on time"
    assert rows["late_extension"]["outcome_detail"] == ""


async def test_revoke_now_is_early_with_who_ended_it_and_the_end_it_had_before(review_db: ReviewDb) -> None:
    rows = {r["request_id"]: r for r in await csv_rows(review_db)}
    assert rows["early"]["outcome"] == "early"
    assert rows["early"]["scheduled_end"] == "2026-11-02 04:00:00Z"  # the plan, not the moved end
    assert rows["early"]["ended_at"] == "2026-11-02 01:00:00Z"


async def test_cancelled_requests_are_not_access_and_approval_only_windows_say_so(review_db: ReviewDb) -> None:
    rows = {r["request_id"]: r for r in await csv_rows(review_db)}
    assert "cancelled" not in rows
    assert rows["gate"]["identity"] == ""
    assert rows["gate"]["outcome_detail"] == "approval only (no system access)"


async def test_a_csv_cell_a_spreadsheet_would_run_as_a_formula_is_written_as_text(review_db: ReviewDb) -> None:
    evil = grant("formula", SINCE + timedelta(hours=5), 1, fields={"reason": '=HYPERLINK("http://x","y")'})
    await RequestRepo(review_db.store).create(evil, AuditEvent(at=SINCE, actor="U_ALICE", action="x"))
    rows = {r["request_id"]: r for r in await csv_rows(review_db)}
    assert rows["formula"]["reason"] == '\'=HYPERLINK("http://x","y")'


async def test_the_html_page_is_self_contained_and_escapes_everything_people_typed(review_db: ReviewDb) -> None:
    hostile = grant(
        "xss",
        SINCE + timedelta(hours=6),
        1,
        target="<b>prod</b>",
        requester_email='"><script>alert(1)</script>',
        fields={"reason": "<img src=x onerror=alert(2)>"},
    )
    await RequestRepo(review_db.store).create(hostile, AuditEvent(at=SINCE, actor="U_ALICE", action="x"))
    page = await html_page(review_db)
    assert "<script" not in page and "<img" not in page and "<b>prod" not in page
    assert "&lt;img src=x onerror=alert(2)&gt;" in page
    assert "&lt;b&gt;prod&lt;/b&gt;" in page
    # Nothing is fetched: no external stylesheet, script, image or font, and a policy that forbids them.
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page)
    assert "default-src 'none'" in page


async def test_the_timeline_draws_one_bar_per_grant_and_one_lane_per_person(review_db: ReviewDb) -> None:
    page = await html_page(review_db)
    bars = re.findall(r'<rect class="grant outcome-([a-z-]+)" data-request="([^"]+)"', page)
    assert sorted(r for _, r in bars) == sorted(review_db.in_period)
    assert dict((r, o) for o, r in bars)["early"] == "early"
    # db_access/prod_admin: Alice and Carol; db_access/staging: Alice; deploy_gate: Alice.
    assert len(re.findall(r'<text class="lane"', page)) == 4
    assert page.count('<section class="target">') == 3


# A grant of U's, approved by U_BOB at SINCE and revoked; each test replaces what it is about.
REVOKED = GrantRecord(
    request_id="r",
    flow="f",
    target="t",
    requester="U",
    requester_email=None,
    identity=None,
    status="revoked",
    requested_at=SINCE,
    approved_by="U_BOB",
    approved_at=SINCE,
    reason=None,
    approval_note=None,
    start=SINCE,
    scheduled_end=SINCE + timedelta(hours=2),
    ended_at=None,
    ended_by=None,
    failure=None,
    last_error=None,
)


def test_a_grant_revoked_at_its_end_is_on_time_and_one_revoked_before_it_is_early() -> None:
    record_end = SINCE + timedelta(hours=2)
    record = replace(REVOKED, scheduled_end=record_end, ended_at=record_end + timedelta(milliseconds=400))
    assert outcome(record, NOW) is Outcome.ON_TIME
    assert outcome(replace(record, ended_at=record_end - timedelta(seconds=0.5)), NOW) is Outcome.ON_TIME
    assert outcome(replace(record, ended_at=record_end - timedelta(minutes=5)), NOW) is Outcome.EARLY


def test_a_revoke_now_whose_revocation_is_still_retried_is_overdue_and_says_who_ended_it() -> None:
    record = replace(
        REVOKED,
        status="granted",
        scheduled_end=SINCE + timedelta(hours=4),  # the planned end, from access.revoke_requested
        ended_by="U_ALICE",
        last_error="Okta answered 503",
    )
    result = outcome(record, SINCE + timedelta(hours=1))  # before the planned end: still not "active"
    assert result is Outcome.OVERDUE
    assert outcome_detail(record, result) == "ended by U_ALICE; revocation not yet done: Okta answered 503"
