"""Who may look at a request outside its approval channel (the HTTP API): the people it concerns.

The requester, whoever decided it, and whoever may decide its flow's requests (named approvers,
members of approver groups, the hook-chosen approvers of that request; everyone but guests when the
flow names no approvers). Display only: group membership may come from the directory's cache, since
every decision reads it fresh again.
"""

from __future__ import annotations

from core.config_models import Flow
from core.models import AccessRequest
from core.ports import Directory


async def may_view(request: AccessRequest, flow: Flow | None, viewer: str, directory: Directory) -> bool:
    """Whether `viewer` (a Slack user id) may see `request`."""
    if viewer in (request.requester, request.decided_by):
        return True
    if request.approvers is not None:
        return viewer in request.approvers
    if flow is None:
        return False
    if flow.approvers is None:
        return not (await directory.lookup_user(viewer)).guest or flow.allow_guests
    if viewer in flow.approvers.users:
        return True
    for group in flow.approvers.usergroups:
        if viewer in await directory.usergroup_members(group):
            return True
    return False
