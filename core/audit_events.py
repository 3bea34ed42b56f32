"""The documented audit event (docs/audit.md, docs/audit-event.schema.json) and its hash chain.

Every audit row becomes one *document*: a JSON object with a stable, time-ordered `event_id`
(UUIDv7), the database's sequence number `seq`, a `type` from a closed vocabulary, the actor, how
the action came in (`via`), the request, flow, target, reason and fields, and `prev_hash` / `hash`.

Types come from the recorded `action` through `EVENT_TYPES`, the ONE place that maps them; an action
it does not know becomes type `other` (its `action` is kept), so a new kind of row never fails a
write. `hash` is SHA-256 over the previous event's hash and the event's canonical JSON (RFC 8785,
the JSON Canonicalization Scheme, so any language can check it), with `hash` itself left out.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import rfc8785
import uuid6

SCHEMA_ID = "jitbot.audit/1"
GENESIS_HASH = "0" * 64
OTHER = "other"
VIAS = ("slack", "api", "hook", "system", "cli")

# action as recorded → documented type. Aliases cover the spellings other parts of the bot use or may
# use for the same act; anything else is `other` (docs/audit.md lists every type).
EVENT_TYPES: Mapping[str, str] = {
    "request.created": "request.created",
    "request.routed": "request.routed",
    "request.approved": "request.approved",
    "approval.recorded": "request.approval_recorded",
    "request.approval_recorded": "request.approval_recorded",
    "request.approval_counted": "request.approval_recorded",  # one of several approvals a flow needs
    "request.approvals_withdrawn": "request.approvals_withdrawn",
    "request.denied": "request.denied",
    "request.expired": "request.expired",
    "request.cancelled": "request.cancelled",
    "request.canceled": "request.cancelled",
    "request.cancel": "request.cancelled",
    "cancel": "request.cancelled",
    "request.reminded": "request.reminded",
    "reminder.sent": "request.reminded",
    "request.escalated": "request.escalated",
    "access.granted": "access.granted",
    "grant.failed": "access.grant_failed",
    "grant.failure_record_failed": "access.grant_failed",
    "grant.in_doubt": "access.in_doubt",
    "grant.cleaned_up": "access.cleaned_up",
    "grant.cleanup_deferred": "access.cleanup_deferred",
    "access.revoked": "access.revoked",
    "access.revoked_early": "access.revoked",
    "access.revoke_now": "access.revoked",
    "revoke.now": "access.revoked",
    "revoke.failed": "access.revoke_failed",
    "access.revoke_requested": "access.revoke_requested",  # Revoke now: who, why, the planned end
    "access.handed_over": "access.handed_over",  # an extension took this grant's access over
    "access.warned": "access.warned",  # the requester was warned the end is near
    "access.extended": "access.extended",
    "request.extended": "access.extended",
    "extend": "access.extended",
    "click.refused": "click.refused",
    "hook.verdict": "hook.verdict",
    "hook.failed": "hook.failed",
    "config.loaded": "config.loaded",
    "identity.set": "identity.set",
    "identity.remove": "identity.removed",
    "identity.removed": "identity.removed",
    "drift.found": "drift.found",
    "drift.revoked": "drift.revoked",
    "drift.removed": "drift.revoked",
    "drift.remove_failed": "drift.revoke_failed",
    "drift.resolved": "drift.resolved",
    "reconcile.failed": "drift.check_failed",
    "drift.listing_failed": "drift.check_failed",
    "drift.listing_recovered": "drift.check_recovered",
    "token.created": "token.created",
    "token.revoked": "token.revoked",
    "api.call": "api.call",  # which API token an engine action came through (the token used)
    "api.refused": "api.refused",
}
TYPES: tuple[str, ...] = (*sorted(set(EVENT_TYPES.values())), OTHER)

_SLACK_ID = re.compile(r"^[UWB][A-Z0-9_]{2,}$")
_VIA_PREFIXES = (("hook:", "hook"), ("api:", "api"), ("cli:", "cli"), ("system", "system"))


def event_type(action: str) -> str:
    """The documented type of a recorded action; `other` for one not (yet) in EVENT_TYPES."""
    return EVENT_TYPES.get(action, OTHER)


def via_for(actor: str | None, explicit: str | None = None) -> str:
    """How the action came in: `explicit` when it is one of VIAS, else read from the actor's form."""
    if explicit in VIAS:
        return explicit
    text = actor or ""
    for prefix, via in _VIA_PREFIXES:
        if text.startswith(prefix):
            return via
    return "slack" if _SLACK_ID.match(text) else "system"


def slack_id_of(actor: str | None) -> str | None:
    """The actor's Slack user id when the actor is one, else None."""
    return actor if actor and _SLACK_ID.match(actor) else None


def new_event_id() -> str:
    """A fresh time-ordered id (UUIDv7): sorts by creation time, unique without coordination."""
    return str(uuid6.uuid7())


def event_id_at(at: str, seq: int) -> str:
    """A UUIDv7 for a row written before event ids existed, time-ordered by its recorded `at`."""
    try:
        millis = int(datetime.fromisoformat(at).timestamp() * 1000)
    except ValueError:
        millis = 0
    rand_a = seq & 0xFFF  # the seq keeps rows of the same millisecond apart and in order
    rand_b = int.from_bytes(os.urandom(8)) & ((1 << 62) - 1)
    value = (millis & ((1 << 48) - 1)) << 80 | 0x7 << 76 | rand_a << 64 | 0b10 << 62 | rand_b
    return str(uuid.UUID(int=value))


def read_detail(text: str | None) -> dict[str, Any]:
    """A stored detail as the object the chain hashed: a non-object is wrapped, never dropped."""
    try:
        detail = json.loads(text or "{}")
    except ValueError:
        return {"unreadable_detail": text}
    return detail if isinstance(detail, dict) else {"detail": detail}


def canonical(document: Mapping[str, Any]) -> bytes:
    """The RFC 8785 canonical JSON of `document` without its `hash` key.

    Without floats and without keys outside the Basic Multilingual Plane, the standard library's
    sorted, compact JSON is byte for byte RFC 8785 (same escapes, same key order), and ~10x faster
    than the pure-Python `rfc8785`; anything else goes through `rfc8785` (a property test holds the two equal).
    """
    body = {k: v for k, v in document.items() if k != "hash"}
    if _jcs_safe(body):
        try:
            return _FAST_JSON(body).encode("utf-8")
        except UnicodeEncodeError:  # a lone surrogate: see below
            pass
    try:
        return rfc8785.dumps(body)
    except rfc8785.CanonicalizationError:
        # Only a row written before json_safe existed can hold an integer beyond 2**53, a NaN or a lone
        # surrogate: it is still hashed, deterministically, so the chain never fails to compute.
        return _LAST_RESORT_JSON(body).encode("utf-8", "surrogatepass")


_FAST_JSON = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode
_LAST_RESORT_JSON = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode
_SAFE_INT = 2**53 - 1


def json_safe(value: Any) -> Any:
    """`value` with what RFC 8785 cannot write (integers beyond ±2**53-1, NaN, infinities) turned into text."""
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [json_safe(v) for v in value]
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int):
        return value if -_SAFE_INT <= value <= _SAFE_INT else str(value)
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    return value


def _jcs_safe(value: Any) -> bool:
    """Whether the stdlib's sorted JSON of `value` is its RFC 8785 form: no floats, no astral-plane keys."""
    if isinstance(value, dict):
        return all(
            isinstance(k, str) and (k.isascii() or max(k) < "\U00010000") and _jcs_safe(v) for k, v in value.items()
        )
    if isinstance(value, list):
        return all(_jcs_safe(v) for v in value)
    if isinstance(value, int):  # bool is an int
        return -_SAFE_INT <= value <= _SAFE_INT
    return value is None or isinstance(value, str)


def chain_hash(prev_hash: str, document: Mapping[str, Any]) -> str:
    """SHA-256 (hex) over the previous hash and the canonical JSON of the event."""
    digest = hashlib.sha256(prev_hash.encode("ascii"))
    digest.update(canonical(document))
    return digest.hexdigest()


@dataclass(frozen=True)
class StoredEvent:
    """One audit row as stored, every column the document is built from."""

    seq: int
    event_id: str
    type: str
    action: str
    at: str  # the stored UTC text form, e.g. '2026-11-21T15:59:11.123456Z'
    actor: str
    actor_email: str | None
    actor_name: str | None
    via: str
    request_id: str | None
    flow: str | None
    target: str | None
    status_from: str | None
    status_to: str | None
    reason: str | None
    fields: Mapping[str, Any] | None
    detail: Mapping[str, Any]
    prev_hash: str
    hash: str

    def document(self) -> dict[str, Any]:
        """The event as docs/audit-event.schema.json describes it (what destinations and export get)."""
        return {
            "schema": SCHEMA_ID,
            "event_id": self.event_id,
            "seq": self.seq,
            "type": self.type,
            "action": self.action,
            "at": self.at,
            "actor": {
                "id": self.actor,
                "slack_id": slack_id_of(self.actor),
                "email": self.actor_email,
                "name": self.actor_name,
            },
            "via": self.via,
            "request_id": self.request_id,
            "flow": self.flow,
            "target": self.target,
            "status_from": self.status_from,
            "status_to": self.status_to,
            "reason": self.reason,
            "fields": None if self.fields is None else dict(self.fields),
            "detail": dict(self.detail),
            "prev_hash": self.prev_hash,
            "hash": self.hash,
        }

    def computed_hash(self) -> str:
        """What `hash` must be for this row's content and its recorded `prev_hash`."""
        return chain_hash(self.prev_hash, self.document())


@dataclass(frozen=True)
class ChainHead:
    """The newest event of a trail: its seq and hash (0 and None when the trail is empty)."""

    seq: int
    hash: str | None
    event_id: str | None = None

    def document(self) -> dict[str, Any]:
        """As it travels with every delivered event."""
        return {"seq": self.seq, "event_id": self.event_id, "hash": self.hash}


@dataclass(frozen=True)
class ChainBreak:
    """The first event where the chain does not hold, and why."""

    seq: int
    event_id: str
    problem: str


class ChainChecker:
    """Checks events one at a time, in seq order: each must follow the previous one's hash and match its own."""

    def __init__(self) -> None:
        self.prev = GENESIS_HASH
        self.last: StoredEvent | None = None
        self.count = 0

    def feed(self, event: StoredEvent) -> ChainBreak | None:
        """The break at `event`, or None when it holds."""
        self.count += 1
        if event.prev_hash != self.prev:
            why = "an event before it was removed or changed" if self.last else "events before it were removed"
            return ChainBreak(event.seq, str(event.event_id or "(none)"), f"its prev_hash does not match: {why}")
        try:
            computed = event.computed_hash()
        except (TypeError, ValueError) as exc:  # a blob or a number where text was written: edited by hand
            why = f"its content cannot be read ({type(exc).__name__}): it was edited or forged"
            return ChainBreak(event.seq, str(event.event_id or "(none)"), why)
        if computed != event.hash:
            return ChainBreak(
                event.seq,
                str(event.event_id or "(none)"),
                "its content does not match its hash: it was edited or forged",
            )
        self.prev, self.last = event.hash, event
        return None


def config_loaded_detail(
    path: str, content: bytes, previous_sha256: str | None, flows: Iterable[str], destinations: Iterable[str]
) -> dict[str, Any]:
    """What a `config.loaded` event records: the flows file's SHA-256, and whether it changed since the last start."""
    digest = hashlib.sha256(content).hexdigest()
    return {
        "path": path,
        "sha256": digest,
        "previous_sha256": previous_sha256,
        "changed": previous_sha256 is not None and previous_sha256 != digest,
        "flows": list(flows),
        "destinations": list(destinations),
    }
