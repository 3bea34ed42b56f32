"""What the engine needs from the outside world, as protocols.

handlers/ implements Directory and Notifier for Slack, storage/ the stores, core.scheduler the
Timers. Core owns these protocols; the adapters depend on core, never the other way round.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any, NamedTuple, Protocol

from core.audit_events import ChainHead, StoredEvent
from core.models import AccessRequest, AuditEvent, RequestStatus, TransitionStep


@dataclass(frozen=True)
class UserInfo:
    """A chat user as the directory knows them."""

    slack_id: str
    email: str | None = None
    name: str | None = None
    is_bot: bool = False
    deleted: bool = False
    guest: bool = False  # a guest account, or someone from another organisation (shared channels)


class RequesterNotice(StrEnum):
    """The moments the requester hears about their request."""

    SUBMITTED = "submitted"
    GRANTED = "granted"
    DENIED = "denied"
    FAILED = "failed"
    REVOKED = "revoked"
    EXPIRED = "expired"
    NOT_POSTED = "not_posted"
    SUPERSEDED = "superseded"  # this grant ended, but another live grant keeps the same access
    CANCELLED = "cancelled"  # the requester withdrew a pending request
    ENDED_EARLY = "ended_early"  # someone pressed Revoke now
    EXTENDED = "extended"  # an extension was approved while the grant was live: the end moved
    WARNING = "warning"  # the access ends soon (warn_before)


class Directory(Protocol):
    """Looks people and groups up in the chat workspace.

    `fresh=True` bypasses any cache: decisions read the present, a cache may only speed up display.
    """

    async def lookup_user(self, slack_id: str, *, fresh: bool = False) -> UserInfo: ...

    async def usergroup_members(self, usergroup_id: str, *, fresh: bool = False) -> frozenset[str]: ...


class Notifier(Protocol):
    """Shows requests to people: the approval-channel message, DMs, and operator alerts."""

    async def publish(self, request: AccessRequest) -> str:
        """Post the request's channel message, or update it in place when it has one; return its ts."""
        ...

    async def notify_requester(
        self, request: AccessRequest, notice: RequesterNotice, detail: str | None = None
    ) -> None:
        """DM the requester about `notice`; `detail` is extra text such as a strategy's instructions."""
        ...

    async def alert(self, alert: Alert) -> None:
        """Tell the operators; the notifier renders the alert (and escapes its text)."""
        ...


@dataclass(frozen=True)
class Alert:
    """Something the operators must know, as data: plain text only, rendered by the notifier.

    `summary` says what happened, `error` quotes the failure (scrubbed), `action` says what jitbot
    does next or what a person should do; `request` is the request it concerns, if any.
    """

    summary: str
    request: AccessRequest | None = None
    error: str | None = None
    action: str | None = None

    def __str__(self) -> str:
        about = ""
        if self.request is not None:
            request = self.request
            about = f" (request {request.id}, {request.flow}/{request.target}, requested by {request.requester})"
        error = f": {self.error.rstrip('. ')}" if self.error else ""
        action = f" {self.action}" if self.action else ""
        return f"{self.summary}{about}{error}.{action}"


class Timers(Protocol):
    """Where the engine arms its timers; core.scheduler implements it, tests may use a recorder."""

    def arm_revoke(self, request_id: str, when: datetime) -> None: ...

    def arm_expire(self, request_id: str, when: datetime) -> None: ...

    def arm_warn(self, request_id: str, when: datetime) -> None: ...

    def disarm(self, request_id: str) -> None: ...


class NoTimers:
    """Timers that arm nothing: the sweep alone drives time (tests, and before the scheduler is wired)."""

    def arm_revoke(self, request_id: str, when: datetime) -> None:
        """Arm nothing."""

    def arm_expire(self, request_id: str, when: datetime) -> None:
        """Arm nothing."""

    def arm_warn(self, request_id: str, when: datetime) -> None:
        """Arm nothing."""

    def disarm(self, request_id: str) -> None:
        """Disarm nothing."""


class LiveGrants(NamedTuple):
    """One group of live grants (approved, granted, or failed with a clean-up due) with the same flow,
    target and recorded grant_spec, and how many there are."""

    flow: str
    target: str
    spec: dict[str, Any]
    spec_text: str  # as stored, to find the group's rows again
    grants: int


class RequestStore(Protocol):
    """Access requests, every status change a compare-and-set with its audit row (storage.requests)."""

    async def create(self, request: AccessRequest, audit: AuditEvent) -> AccessRequest: ...

    async def get(self, request_id: str) -> AccessRequest: ...

    async def transition(
        self,
        request_id: str,
        expected: RequestStatus | Collection[RequestStatus],
        new: RequestStatus,
        *,
        changes: Mapping[str, Any] = ...,
        audit: AuditEvent,
    ) -> AccessRequest: ...

    async def update(
        self,
        request_id: str,
        changes: Mapping[str, Any],
        *,
        audit: AuditEvent | None = None,
        expected_status: RequestStatus | Collection[RequestStatus] | None = None,
    ) -> AccessRequest: ...

    async def list_by_status(self, *statuses: RequestStatus) -> list[AccessRequest]: ...

    async def list_due_revocations(self, now: datetime) -> list[AccessRequest]: ...

    async def list_pending_timed_out(self, now: datetime) -> list[AccessRequest]: ...

    async def list_live_for(self, flow: str, target: str, requester: str) -> list[AccessRequest]: ...

    async def list_unposted(self) -> list[AccessRequest]: ...

    async def list_live_unposted(self, decided_before: datetime) -> list[AccessRequest]: ...

    async def live_grant_specs(self) -> list[LiveGrants]: ...

    async def live_grant_ids(self, group: LiveGrants) -> list[str]: ...

    async def list_granted_schedule(
        self, until: datetime | None = None
    ) -> Sequence[tuple[str, datetime, datetime | None]]: ...

    async def list_pending_timeouts(self, until: datetime | None = None) -> Sequence[tuple[str, datetime]]: ...

    async def transition_all(self, steps: Sequence[TransitionStep]) -> list[AccessRequest]: ...

    async def list_due_warnings(self, now: datetime) -> list[AccessRequest]: ...

    async def list_warn_schedule(self, until: datetime) -> Sequence[tuple[str, datetime]]: ...

    async def page_for_requester(
        self, requester: str, statuses: Sequence[RequestStatus], limit: int
    ) -> tuple[list[AccessRequest], int]: ...

    async def page_pending(self, limit: int, *, exclude_requester: str) -> tuple[list[AccessRequest], int]: ...


class AuditTrail(Protocol):
    """The append-only audit trail (storage.audit)."""

    async def append(self, event: AuditEvent) -> int: ...


class IdentityLookup(Protocol):
    """Stored identity overrides: who a Slack user is in a target system (storage.identities)."""

    async def get(self, slack_id: str, system: str) -> str | None: ...


@dataclass(frozen=True)
class DestinationStatus:
    """Where one audit destination stands: its cursor, what it still has to get, how it is going."""

    name: str
    position: int  # seq of the last event it acknowledged
    head: int  # seq of the newest event
    backlog: int  # events not yet delivered
    oldest_undelivered_at: datetime | None = None
    first_seen_at: datetime | None = None
    delivered_at: datetime | None = None
    failures: int = 0  # failed deliveries in a row
    last_error: str | None = None
    last_error_at: datetime | None = None
    alerted_at: datetime | None = None


class AuditOutbox(Protocol):
    """The audit trail read as an outbox, with one cursor per destination (storage.audit_outbox)."""

    async def ensure(self, names: Sequence[str], now: datetime) -> None: ...

    async def position(self, name: str) -> int: ...

    async def after(self, seq: int, limit: int) -> Sequence[StoredEvent]: ...

    async def head(self) -> ChainHead: ...

    async def advance(self, name: str, seq: int, now: datetime) -> None: ...

    async def failed(self, name: str, error: str, now: datetime) -> int: ...

    async def alerted(self, name: str, now: datetime) -> None: ...

    async def status(self, names: Sequence[str] | None = None) -> list[DestinationStatus]: ...
