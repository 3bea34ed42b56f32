"""Domain values shared by every layer: who asks, for what, and where the request stands."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any


class RequestStatus(StrEnum):
    """Where a request stands; values are the lowercase words of docs/slack-behaviour.md."""

    PENDING = "pending"
    APPROVED = "approved"
    GRANTED = "granted"
    REVOKED = "revoked"
    DENIED = "denied"
    FAILED = "failed"
    EXPIRED = "expired"


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
    grant can still be revoked after its flow is edited or removed.
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


@dataclass(frozen=True)
class MessageRef:
    """Where a click came from: the channel and timestamp of the message that carried the button."""

    channel: str | None
    ts: str | None


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
