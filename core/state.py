"""The request state machine: a forward-only transition table. Pure, no I/O."""

from __future__ import annotations

from core.models import RequestStatus as S

TRANSITIONS: dict[S, frozenset[S]] = {
    S.PENDING: frozenset({S.APPROVED, S.DENIED, S.EXPIRED, S.CANCELLED}),
    S.APPROVED: frozenset({S.GRANTED, S.FAILED}),
    S.GRANTED: frozenset({S.REVOKED}),
    S.REVOKED: frozenset(),
    S.DENIED: frozenset(),
    S.FAILED: frozenset(),
    S.EXPIRED: frozenset(),
    S.CANCELLED: frozenset(),
}


def can_transition(current: S, requested: S) -> bool:
    """Whether `current` may move to `requested`."""
    return requested in TRANSITIONS[current]
