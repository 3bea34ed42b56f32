"""Who may decide a request: a pure decision from the flow's rules and the request's approvers."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass


@dataclass(frozen=True)
class Decision:
    """The outcome of a policy check; `reason` is shown to a refused person."""

    allowed: bool
    reason: str = ""


NOBODY_MAY_DECIDE = (
    "Nobody may decide this request: its approval rule could not be evaluated, so it cannot be approved. "
    "The operators have been alerted."
)


def may_decide(
    *,
    requester: str,
    clicker: str,
    allow_self_approval: bool,
    approver_users: Collection[str] | None,
    approver_group_members: Collection[str] = (),
    clicker_is_guest: bool = False,
    allow_guests: bool = False,
) -> Decision:
    """Whether `clicker` may approve or deny `requester`'s request.

    `approver_users` is None when the flow names no approvers (anyone but the requester may
    decide); otherwise the allowed set is those users plus the members of the named user groups.
    A hook's `get_approvers` replaces both lists for its request. Guests and people from other
    organisations never decide unless the flow allows guests.
    """
    if clicker_is_guest and not allow_guests:
        return Decision(False, "Guests and people from other organisations can't decide access requests.")
    if clicker == requester and not allow_self_approval:
        return Decision(False, "You can't approve or deny your own request.")
    if approver_users is None:
        return Decision(True)
    if clicker in approver_users or clicker in approver_group_members:
        return Decision(True)
    return Decision(False, "You are not an approver for this request.")
