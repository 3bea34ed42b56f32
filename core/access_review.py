"""The access review: who held which target, from when to when, approved by whom, why, and how it ended.

Pure values and rules, no I/O: `storage.access_review` reads the grants of a period out of the
requests table (streamed), `reports.access` renders them as CSV or one self-contained HTML page.
docs/access-review.md describes the report as an auditor reads it.

How a grant ended (`Outcome`) is decided from the stored request and its own audit rows:
- `failed`: the grant itself failed (whatever it may have left was cleaned up by the revoke retries);
- `extended`: an extension took its access over before the end (its `access.handed_over` row names
  the request that holds the access from then on; the access itself never stopped);
- `early`: someone ended it with Revoke now (`revoked_by`), or it was revoked before its scheduled end;
- `on time`: revoked at (or after) its scheduled end;
- `active`: still held, its end not yet reached;
- `overdue`: still recorded as held after its scheduled end, or after Revoke now (the revocation is failing or pending);
- `granting`: approved, the grant not yet recorded (in progress, or in doubt after a crash).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

# A revocation recorded within this much of the scheduled end counts as on time: the end is
# stored to the microsecond and the revoke timer fires a little after it, never before.
EARLY_TOLERANCE = timedelta(seconds=1)


class Outcome(StrEnum):
    """How a grant ended (or where it stands at the time of the report)."""

    ON_TIME = "on time"
    EARLY = "early"
    EXTENDED = "extended"
    FAILED = "failed"
    ACTIVE = "active"
    OVERDUE = "overdue"
    GRANTING = "granting"


@dataclass(frozen=True)
class GrantRecord:
    """One approved request as the review shows it; times are aware UTC."""

    request_id: str
    flow: str
    target: str
    requester: str
    requester_email: str | None
    identity: str | None
    status: str
    requested_at: datetime
    approved_by: str | None
    approved_at: datetime | None
    reason: str | None
    approval_note: str | None
    start: datetime | None
    scheduled_end: datetime | None
    ended_at: datetime | None
    ended_by: str | None  # who ended it early (Revoke now); None when it ran to its end
    failure: str | None
    last_error: str | None
    end_reason: str | None = None
    extended_by: str | None = None  # the extension request that took this grant's access over
    continues: str | None = None  # for an extension that took access over: the grant it continues
    held_since: datetime | None = None  # for such an extension: since when the access is held without a gap
    previous_end: datetime | None = None  # for such an extension: the end it moved (to `scheduled_end`)
    approval_only: bool = False  # a flow with no strategy: an approved window, no access in any system

    @property
    def who(self) -> str:
        """The requester as an auditor reads them: the email with the Slack id, or the id alone."""
        return f"{self.requester_email} ({self.requester})" if self.requester_email else self.requester


@dataclass(frozen=True)
class TargetSummary:
    """One target of the period: how many grants it had and how many people held them."""

    flow: str
    target: str
    grants: int
    people: int


def outcome(record: GrantRecord, now: datetime) -> Outcome:
    """How `record` ended, or where it stands at `now` (see the module docstring)."""
    if record.status == "failed":
        return Outcome.FAILED
    if record.extended_by:
        return Outcome.EXTENDED
    if record.status == "approved":
        return Outcome.GRANTING
    if record.status == "granted":
        # Ended with Revoke now and still held: the revocation is being retried, whatever the planned end.
        if record.ended_by is not None or (record.scheduled_end is not None and record.scheduled_end <= now):
            return Outcome.OVERDUE
        return Outcome.ACTIVE
    if record.ended_by is not None:
        return Outcome.EARLY
    if record.ended_at is not None and record.scheduled_end is not None:
        if record.ended_at < record.scheduled_end - EARLY_TOLERANCE:
            return Outcome.EARLY
    return Outcome.ON_TIME


def outcome_detail(record: GrantRecord, result: Outcome) -> str:
    """The words that explain an outcome: who ended it early, which request extended it, which grant an
    extension continues, why a grant failed, what keeps failing; an approval-only window says so."""
    parts: list[str] = []
    if record.approval_only:
        parts.append("approval only (no system access)")
    if record.continues is not None:
        since = f"held since {_when(record.held_since)}, " if record.held_since else ""
        moved = f"end moved from {_when(record.previous_end)} to {_when(record.scheduled_end)}"
        parts.append(f"continues the access of request {record.continues} ({since}{moved})")
    if result is Outcome.FAILED:
        parts.append(record.failure or "")
    elif result is Outcome.EXTENDED:
        parts.append(f"extended by request {record.extended_by}")
    elif result is Outcome.EARLY and record.ended_by:
        parts.append(f"ended by {record.ended_by}")
    elif result is Outcome.OVERDUE:
        ending = f"ended by {record.ended_by}; " if record.ended_by else ""
        error = f": {record.last_error}" if record.last_error else ""
        parts.append(f"{ending}revocation not yet done{error}")
    return "; ".join(p for p in parts if p)


def _when(value: datetime | None) -> str:
    return "?" if value is None else value.strftime("%Y-%m-%d %H:%M:%S") + "Z"


def request_reason(fields: Mapping[str, Any]) -> str | None:
    """The reason the requester gave: the `reason` field when the flow has one."""
    value = fields.get("reason")
    return None if value is None else str(value)


def bar_end(record: GrantRecord, now: datetime) -> datetime | None:
    """Where a grant's bar ends on a timeline: its recorded end, else now while it is held."""
    if record.ended_at is not None:
        return record.ended_at
    if record.status in ("granted", "approved"):
        return now
    return record.start  # a failed grant: a mark at the attempt
