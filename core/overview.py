"""What one person has to see: their live grants, their pending requests, and the requests waiting
for their decision, each newest first, bounded, with how many there are in all (App Home, /sym list).

This is display only. Who may decide is estimated with the directory's cache; every button on it is
checked again against now when it is clicked (core.decisions, core.early_end, core.extension).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import structlog

from core.lifecycle import Lifecycle
from core.models import AccessRequest
from core.models import RequestStatus as S
from core.ports import Directory

log = structlog.get_logger("jitbot.engine")

PENDING_SCAN = 500  # pending requests looked at to find those a person may decide (newest first)


@dataclass(frozen=True)
class Section:
    """The newest requests of one kind (at most the limit asked for) and how many there are in all."""

    items: list[AccessRequest] = field(default_factory=list)
    total: int = 0


@dataclass(frozen=True)
class Overview:
    """One person's live grants, pending requests, and requests awaiting their decision."""

    user: str
    live: Section
    pending: Section
    awaiting: Section


async def overview_for(life: Lifecycle, directory: Directory, user: str, limit: int) -> Overview:
    """`user`'s overview, at most `limit` requests per section."""
    live = await life.requests.page_for_requester(user, [S.GRANTED], limit)
    pending = await life.requests.page_for_requester(user, [S.PENDING], limit)
    candidates, _ = await life.requests.page_pending(PENDING_SCAN, exclude_requester=user)
    awaiting = [r for r in candidates if await awaits_decision_of(life, directory, user, r)]
    return Overview(
        user,
        Section(list(live[0]), live[1]),
        Section(list(pending[0]), pending[1]),
        Section(awaiting[:limit], len(awaiting)),
    )


async def awaits_decision_of(life: Lifecycle, directory: Directory, user: str, request: AccessRequest) -> bool:
    """Whether `request` is one for `user` to decide, for display: user groups from the directory's cache."""
    if request.approvers is not None:  # routed by a hook; () = nobody
        return user in request.approvers
    flow = life.flow(request.flow)
    if flow is None:
        return False
    if flow.approvers is None:
        return True
    if user in flow.approvers.users:
        return True
    for group in flow.approvers.usergroups:
        try:
            if user in await directory.usergroup_members(group):
                return True
        except Exception as exc:  # display only: an unreadable group just hides the request here
            log.warning("directory.unavailable", usergroup=group, error=life.scrub(str(exc)))
    return False
