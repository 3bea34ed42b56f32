"""What a decision must find true at the moment it is made, checked against now, never a cache.

An Approve is accepted only if the request is still pending, the click came from the request's own
message, its flow and target still exist, its duration is still allowed, the requester is still an
active member of the workspace, and the person clicking may decide (user-group membership and guest
status read fresh). A refusal is audited and raised as `NotAllowed` (or `AlreadyDecided`, which the
handler renders with who decided). When Slack cannot be asked, the click is refused.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Iterable
from datetime import timedelta

import structlog

from core.config_models import Flow
from core.errors import NotAllowed
from core.lifecycle import Lifecycle
from core.models import AccessRequest, MessageRef
from core.models import RequestStatus as S
from core.origin import SLACK, origin
from core.policy import NOBODY_MAY_DECIDE, may_decide
from core.ports import Directory, UserInfo
from core.reminders import escalated

log = structlog.get_logger("jitbot.engine")

GUESTS_REFUSED = "Guests and people from other organisations can't request access with this flow."


class AlreadyDecided(NotAllowed):
    """A click on a request that is no longer pending; `status` and `by` let the handler say who decided."""

    def __init__(self, status: str, by: str | None) -> None:
        self.status, self.by = status, by
        super().__init__(f"request already {status}", user_message=f"This request is already {status}.")


class DirectoryUnavailable(NotAllowed):
    """Slack could not be asked about a person or a group: the decision waits, nothing is concluded."""


class AlreadyEnded(AlreadyDecided):
    """A click on access that already ended (or is already being ended); the handler shows `user_message`."""

    def __init__(self, request: AccessRequest, message: str | None = None) -> None:
        self.status, self.by = request.status.value, request.revoked_by or request.decided_by
        text = message or "This access has already ended."
        NotAllowed.__init__(self, text, user_message=text)


def duration_allowed(flow: Flow, duration_seconds: int) -> bool:
    """Whether the flow's duration field still allows a request of this length."""
    return DurationRule(flow).allows(duration_seconds)


class DurationRule:
    """A flow's duration field, parsed once: which request lengths it allows."""

    def __init__(self, flow: Flow) -> None:
        spec = flow.duration_field
        self.allowed = frozenset(spec.duration_values) if spec.allowed_values else None
        self.longest = spec.max

    def allows(self, duration_seconds: int) -> bool:
        """Whether a request of this length is allowed."""
        length = timedelta(seconds=duration_seconds)
        if self.allowed is not None:
            return length in self.allowed
        return self.longest is None or length <= self.longest


class DecisionChecks:
    """Checks an approve or deny against the present; audits and raises every refusal."""

    def __init__(self, life: Lifecycle, directory: Directory) -> None:
        self.life = life
        self.directory = directory

    async def check(
        self,
        request: AccessRequest,
        actor: str,
        action: str,
        *,
        by_hook: bool,
        source: MessageRef | None,
        via: str = SLACK,
        token: str | None = None,
    ) -> Flow:
        """Return the request's flow when `actor` may `action` it now; else audit and raise NotAllowed."""
        try:
            return await self._refusal(request, actor, action, by_hook=by_hook, source=source, via=via)
        except NotAllowed as refusal:
            detail = {"action": action, "reason": refusal.user_message, **origin(via, token, by_hook=by_hook)}
            await self.life.audit.append(self.life.event(request, actor, "click.refused", detail=detail))
            log.info("click.refused", request_id=request.id, actor=actor, action=action, reason=refusal.user_message)
            raise

    async def _refusal(
        self, request: AccessRequest, actor: str, action: str, *, by_hook: bool, source: MessageRef | None, via: str
    ) -> Flow:
        if request.status is not S.PENDING:
            raise AlreadyDecided(request.status.value, request.decided_by)
        if source is not None and (source.channel, source.ts) != (request.approval_channel, request.message_ts):
            raise NotAllowed("This button does not belong to this request's message.")
        flow = self.life.flow(request.flow)
        if flow is None:
            raise NotAllowed(f"The flow '{request.flow}' is no longer in jitbot's configuration.")
        # The requester is read fresh at the same time as the clicker (one Slack round trip of waiting,
        # not two); what they say is checked in the same order as ever.
        requester: asyncio.Future[UserInfo] | None = None
        if action == "approve" and request.approvers != ():  # () refuses before anyone is asked
            requester = asyncio.ensure_future(self.fresh_user(request.requester, "the requester"))
        try:
            if not by_hook:
                await self._check_decider(request, flow, actor)
            if action == "approve":
                await self._check_still_grantable(request, flow, requester)
        finally:
            if requester is not None:
                if not requester.done():
                    requester.cancel()  # a refusal came first: the answer is not needed
                elif not requester.cancelled():
                    requester.exception()  # seen: a failure after a refusal is not an unhandled error
        hooks = self.life.hooks
        if not by_hook and hooks.has(flow, f"on_{action}"):
            actor_info = await self.directory.lookup_user(actor)
            evt = hooks.event(request, flow, user=await self.life.requester(request), actor=actor_info, via=via)
            ignored = await hooks.on_click(flow, f"on_{action}", evt, request)
            if ignored is not None:
                raise NotAllowed(ignored)
        return flow

    async def still_decides(self, request: AccessRequest, flow: Flow, approver: str) -> bool:
        """Whether someone who approved earlier may still decide now (read fresh); DirectoryUnavailable
        when Slack cannot say, so an approval is never dropped, nor kept, on a guess."""
        try:
            await self._check_decider(request, flow, approver)
        except DirectoryUnavailable:
            raise
        except NotAllowed:
            return False
        return True

    async def _check_decider(self, request: AccessRequest, flow: Flow, actor: str) -> None:
        """Whether `actor` may decide, read fresh: a removed group member or a guest is refused."""
        if request.approvers == ():
            raise NotAllowed(NOBODY_MAY_DECIDE)
        clicker = await self.fresh_user(actor, "you")
        if clicker.deleted:
            # A deactivated account decides nothing, and an approval it gave before no longer counts.
            raise NotAllowed("This Slack account is deactivated: it cannot decide access requests.")
        users: set[str] | None
        members: frozenset[str] = frozenset()
        if request.approvers is not None:
            users = set(request.approvers)
        elif flow.approvers is not None:
            users, members = set(flow.approvers.users), await self._group_members(flow.approvers.usergroups)
        else:
            users = None
        if users is not None and escalated(flow, request, self.life.clock.now()):
            # After escalate_after, the escalation's people may decide too (their groups read fresh).
            to = flow.reminders.escalate_to if flow.reminders is not None else None
            if to is not None:
                users |= set(to.users)
                members |= await self._group_members(to.usergroups)
        decision = may_decide(
            requester=request.requester,
            clicker=actor,
            allow_self_approval=flow.allow_self_approval,
            approver_users=users,
            approver_group_members=members,
            clicker_is_guest=clicker.guest,
            allow_guests=flow.allow_guests,
        )
        if not decision.allowed:
            raise NotAllowed(decision.reason)

    async def _check_still_grantable(
        self, request: AccessRequest, flow: Flow, asked: Awaitable[UserInfo] | None = None
    ) -> None:
        """What an approval needs to be true now, not only when the request was made; `asked` is the
        requester's fresh lookup when it is already under way."""
        if self.life.target_of(flow, request.target) is None:
            raise NotAllowed(f"The target '{request.target}' is no longer in the flow's configuration.")
        if not self.life.derived(flow, "durations", lambda: DurationRule(flow)).allows(request.duration_seconds):
            raise NotAllowed("The requested duration is no longer allowed by the flow; ask again.")
        requester = await (asked if asked is not None else self.fresh_user(request.requester, "the requester"))
        if requester.deleted:
            raise NotAllowed("The requester's Slack account is deactivated.")
        if requester.guest and not flow.allow_guests:
            raise NotAllowed(GUESTS_REFUSED)
        if not await self.listed_requester(flow, request.requester):
            raise NotAllowed("The requester is no longer one of the people who may request with this flow.")

    async def listed_requester(self, flow: Flow, slack_id: str, *, fresh: bool = True) -> bool:
        """Whether the flow's `requesters:` (absent: everyone) lists `slack_id`, groups read fresh;
        DirectoryUnavailable when Slack cannot say (nobody is let in on a guess)."""
        allowed = flow.requesters
        if allowed is None or slack_id in allowed.users:
            return True
        for group in allowed.usergroups:
            try:
                members = await self.directory.usergroup_members(group, fresh=fresh)
            except Exception as exc:
                log.warning("directory.unavailable", usergroup=group, error=self.life.scrub(str(exc)))
                raise DirectoryUnavailable(
                    "Could not check who may use this flow with Slack; try again in a moment."
                ) from None
            if slack_id in members:
                return True
        return False

    async def fresh_user(self, slack_id: str, who: str) -> UserInfo:
        """The person as the directory knows them right now; NotAllowed when it cannot be asked."""
        try:
            person = await self.directory.lookup_user(slack_id, fresh=True)
        except NotAllowed:
            raise
        except Exception as exc:  # fail closed: an unverifiable person decides nothing
            log.warning("directory.unavailable", user=slack_id, error=self.life.scrub(str(exc)))
            raise DirectoryUnavailable(f"Could not check {who} with Slack just now; try again in a moment.") from None
        self.life.remember(person)
        return person

    async def _group_members(self, groups: Iterable[str]) -> frozenset[str]:
        members: set[str] = set()
        for group in groups:
            try:
                members |= await self.directory.usergroup_members(group, fresh=True)
            except Exception as exc:
                log.warning("directory.unavailable", usergroup=group, error=self.life.scrub(str(exc)))
                raise DirectoryUnavailable(
                    "Could not check the approvers' user groups with Slack; try again."
                ) from None
        return frozenset(members)
