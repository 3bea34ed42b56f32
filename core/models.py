"""Domain values shared by every layer: who asks, for what, and where the request stands."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

# What an extension adds to the grant_spec it takes over: the request the access was first granted
# as (strategies that key grants per request revoke under that id) and since when it is held.
CHAIN_KEYS = ("granted_as", "held_since")


class RequestStatus(StrEnum):
    """Where a request stands; values are the lowercase words of docs/slack-behaviour.md."""

    PENDING = "pending"
    APPROVED = "approved"
    GRANTED = "granted"
    REVOKED = "revoked"
    DENIED = "denied"
    FAILED = "failed"
    EXPIRED = "expired"
    CANCELLED = "cancelled"


@dataclass(frozen=True)
class Subject:
    """A person: their Slack id, Slack email, and the identity to use in the target system.

    `identity` is the stored override for the strategy's system when there is one, else the email.
    """

    slack_id: str
    email: str | None = None
    identity: str | None = None
    name: str | None = None


@dataclass(frozen=True)
class Target:
    """One grantable thing of a flow: its name, label and strategy-specific settings."""

    name: str
    label: str
    settings: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class AccessRequest:
    """One request for access, as stored: every field the lifecycle needs.

    Times are timezone-aware UTC. `fields` holds every submitted field by name (reason, duration as
    written, custom fields). `grant_state` is what the strategy's grant returned, handed to revoke.
    `grant_spec` is the strategy block and target as written when the request was approved, so the
    grant can still be revoked after its flow is edited or removed. `approvals` lists who approved so
    far when a flow needs several approvals (core.approvals).

    `extends` names the live grant this request extends (docs/slack-behaviour.md); `revoked_by` and
    `end_reason` say who ended a grant early and why; `warn_at` is when the requester is warned that
    the access is about to end (None once sent, or when no warning is due).
    """

    id: str
    flow: str
    target: str
    requester: str
    created_at: datetime
    duration_seconds: int
    status: RequestStatus = RequestStatus.PENDING
    requester_email: str | None = None
    fields: Mapping[str, Any] = field(default_factory=dict)
    approval_channel: str | None = None
    message_ts: str | None = None
    approvers: tuple[str, ...] | None = None
    decided_by: str | None = None
    decided_at: datetime | None = None
    decision_reason: str | None = None
    timeout_at: datetime | None = None
    granted_at: datetime | None = None
    expires_at: datetime | None = None
    ended_at: datetime | None = None
    grant_state: Mapping[str, str] = field(default_factory=dict)
    failure_reason: str | None = None
    revoke_attempts: int = 0
    next_attempt_at: datetime | None = None
    last_error: str | None = None
    grant_spec: Mapping[str, Any] = field(default_factory=dict)
    # Slack ids of those who approved so far, in order (a flow's approvals_required may need several).
    approvals: tuple[str, ...] = ()
    # Who the grant will be made for, shown while it waits: {"identity": "alice@corp", "system": "Okta"}.
    grant_to: Mapping[str, str] = field(default_factory=dict)
    extends: str | None = None
    revoked_by: str | None = None
    end_reason: str | None = None
    warn_at: datetime | None = None


@dataclass(frozen=True)
class MessageRef:
    """Where a click came from: the channel and timestamp of the message that carried the button;
    `direct` when it is the clicker's own direct conversation with the bot (a DM)."""

    channel: str | None
    ts: str | None
    direct: bool = False


@dataclass(frozen=True)
class AuditEvent:
    """One append-only audit record: who did what to which request, when and why.

    Only the first fields are needed: the writer derives the rest of the documented event
    (docs/audit.md): its type from `action` (core.audit_events), `via` from the actor, the flow and
    target from the stored request, and the reason and fields from `detail`, unless given here.
    """

    at: datetime
    actor: str
    action: str
    request_id: str | None = None
    status_from: str | None = None
    status_to: str | None = None
    detail: Mapping[str, Any] = field(default_factory=dict)
    via: str | None = None  # slack | api | hook | system | cli; else detail["via"], else read from the actor
    flow: str | None = None
    target: str | None = None
    actor_email: str | None = None
    actor_name: str | None = None
    reason: str | None = None


@dataclass(frozen=True)
class TransitionStep:
    """One compare-and-set of a multi-row transition: request, expected status(es), new status, changes, audit row."""

    request_id: str
    expected: RequestStatus | Sequence[RequestStatus]
    new: RequestStatus
    changes: Mapping[str, Any]
    audit: AuditEvent
