from __future__ import annotations

import pytest

from core.errors import InvalidTransition
from core.models import RequestStatus as S
from core.state import TRANSITIONS, can_transition

ALLOWED = [
    (S.PENDING, S.APPROVED, "approve"),
    (S.PENDING, S.DENIED, "deny"),
    (S.PENDING, S.EXPIRED, "approval timeout"),
    (S.PENDING, S.CANCELLED, "withdrawn by the requester"),
    (S.APPROVED, S.GRANTED, "grant ok"),
    (S.APPROVED, S.FAILED, "grant failed"),
    (S.GRANTED, S.REVOKED, "revoke ok"),
]
ALLOWED_PAIRS = {(a, b) for a, b, _ in ALLOWED}
FORBIDDEN = [(a, b) for a in S for b in S if (a, b) not in ALLOWED_PAIRS]

# Position along the lifecycle; every edge must move strictly forward.
RANK = {S.PENDING: 0, S.APPROVED: 1, S.DENIED: 1, S.EXPIRED: 1, S.CANCELLED: 1, S.GRANTED: 2, S.FAILED: 2, S.REVOKED: 3}


@pytest.mark.parametrize("current, requested, description", ALLOWED, ids=[d for *_, d in ALLOWED])
def test_allowed_edges(current, requested, description):
    assert can_transition(current, requested)


@pytest.mark.parametrize("current, requested", FORBIDDEN, ids=[f"{a}->{b}" for a, b in FORBIDDEN])
def test_every_other_edge_is_refused(current, requested):
    # The store refuses such an edge with InvalidTransition before any I/O (tests/storage/test_requests.py).
    assert not can_transition(current, requested)


def test_table_covers_every_status_and_matches_the_spec():
    assert set(TRANSITIONS) == set(S)
    assert {(a, b) for a, nxt in TRANSITIONS.items() for b in nxt} == ALLOWED_PAIRS


def test_never_backwards_and_no_self_loops():
    for current, nxt in TRANSITIONS.items():
        for requested in nxt:
            assert RANK[requested] > RANK[current], f"{current} -> {requested} goes backwards"


def test_terminal_statuses():
    assert {s for s, nxt in TRANSITIONS.items() if not nxt} == {S.REVOKED, S.DENIED, S.FAILED, S.EXPIRED, S.CANCELLED}


def test_refusal_tells_the_user_what_happened():
    assert InvalidTransition("r1", S.DENIED.value, S.APPROVED.value).user_message == "This request is already denied."
