"""Ending before the end: **Revoke now** on a live grant, **Cancel request** on a pending one.

Both are clicks, so both are checked against now like Approve (core.decisions): who clicks is read
fresh from the directory, a refusal is audited, and the change itself is one compare-and-set with
its audit row under the request's lock, so a double click or a redelivered envelope acts once.

Revoke now records who ended the access and why, moves the end to now, and then takes the normal
revocation path (`Expiry.revoke_granted`): the same strategy call, the same coverage rule, and on
failure the same retries and alerts as a revocation on time. A scheduled revocation racing it
finds the row already revoked (or already ending) under the same lock, so the strategy's revoke
runs once.
"""

from __future__ import annotations

from collections.abc import Awaitable
from datetime import datetime

import structlog

from core.decisions import AlreadyDecided, AlreadyEnded, DecisionChecks
from core.errors import NotAllowed
from core.expiry import Expiry
from core.extension import TAKE_OVER_TRIES, Extensions
from core.lifecycle import Lifecycle, same_access
from core.models import AccessRequest, MessageRef
from core.models import RequestStatus as S
from core.policy import may_decide
from core.ports import RequesterNotice
from core.strategy import SharesAccess

log = structlog.get_logger("jitbot.engine")


class EarlyEnd:
    """revoke_now / cancel; see the module docstring."""

    def __init__(self, life: Lifecycle, checks: DecisionChecks, expiry: Expiry, extensions: Extensions) -> None:
        self.life = life
        self.checks = checks
        self.expiry = expiry
        self.extensions = extensions

    async def revoke_now(
        self, request_id: str, actor: str, *, via: str = "slack", source: MessageRef | None = None
    ) -> AccessRequest:
        """End a live grant now, as the requester or anyone who may approve its flow. A button on a grant
        that an extension took over ends the access where it is now held."""
        life = self.life
        clicked = request_id
        for _ in range(TAKE_OVER_TRIES):
            request_id = await self.extensions.successor(clicked)
            async with life.lock(request_id):
                if await self.extensions.successor(request_id) != request_id:
                    # An extension took the access over while this click waited for the lock: the
                    # access lives on under it, so the click follows it (never "already ended").
                    continue
                ended = await self._revoke_now_locked(request_id, clicked, actor, via, source)
            await self._end_the_same_access(ended, actor, via)
            await self._close_extensions_of(ended)
            return ended
        raise NotAllowed("This access is being extended right now; try again in a moment.")

    async def _revoke_now_locked(
        self, request_id: str, clicked: str, actor: str, via: str, source: MessageRef | None
    ) -> AccessRequest:
        """Revoke now with the lock of `request_id` held; `clicked` is the request whose button was
        pressed (an earlier grant of the same access, when an extension took it over since)."""
        life = self.life
        request = await life.requests.get(request_id)
        own = None if clicked == request_id else await life.requests.get(clicked)
        name = await self._refused(request, actor, "revoke_now", self._check_may_end(request, actor, source, own))
        now = life.clock.now()
        reason = f"ended early by @{name}"
        request = await life.requests.update(
            request_id,
            # The end moves to now before the strategy is called: if the revoke fails, the row
            # is simply overdue, and the sweep retries it with the usual back-off and alerts.
            {"revoked_by": actor, "end_reason": reason, "expires_at": now, "warn_at": None},
            expected_status=S.GRANTED,
            audit=life.event(
                request,
                actor,
                "access.revoke_requested",
                detail={"via": via, "reason": reason, "planned_end": _iso(request.expires_at)},
            ),
        )
        log.info("access.revoke_requested", request_id=request_id, actor=actor, via=via)
        request = await self.expiry.revoke_granted(request)
        if request.status is S.GRANTED:  # the revoke failed and is retried: the message says it is ending
            request = await life.publish(request)
        return request

    async def _end_the_same_access(self, ended: AccessRequest, actor: str, via: str) -> None:
        """Revoke now ends the ACCESS: another live grant of exactly the same access (two requests
        granted independently, one membership in the target) would keep it on while the message says
        it ended, so it is ended early too, by the same person, each with its own checks and audit row.
        One the clicker may not end is alerted: the access is still there, and the operators are told."""
        life = self.life
        if ended.revoked_by is None or not ended.grant_spec or not isinstance(life.strategy_for(ended), SharesAccess):
            return
        for other in await life.requests.list_live_for(ended.flow, ended.target, ended.requester):
            if other.id == ended.id or not same_access(other.grant_spec, ended.grant_spec):
                continue
            async with life.lock(other.id):
                current = await life.requests.get(other.id)
                if current.status is not S.GRANTED or current.revoked_by is not None:
                    continue
                try:
                    await self._revoke_now_locked(current.id, current.id, actor, via, None)
                except NotAllowed as refused:
                    await life.alert(
                        "Revoke now could not end all of this access: another grant of it is still live",
                        current,
                        error=refused.user_message,
                        action=f"Request {ended.id} was ended early; end request {current.id} too.",
                    )

    async def _close_extensions_of(self, ended: AccessRequest) -> None:
        """Expire the pending extensions of access that Revoke now ended: approving one would undo the
        decision to end it (the approval refuses it anyway: core.extension), so its buttons go now."""
        life = self.life
        if ended.revoked_by is None:
            return
        for listed in await life.requests.list_by_status(S.PENDING):
            if listed.extends is None or (listed.flow, listed.target, listed.requester) != (
                ended.flow,
                ended.target,
                ended.requester,
            ):
                continue
            try:
                async with life.lock(listed.id):
                    pending = await life.requests.get(listed.id)
                    stopped = await self.extensions.ended_early(pending)
                    if pending.status is S.PENDING and stopped is not None and stopped.id == ended.id:
                        await self.expiry.expire_locked(
                            pending, f"the access it would extend was {ended.end_reason or 'ended early'}"
                        )
            except Exception:  # the approval refuses it anyway; this only tidies the channel
                log.exception("extension.close_failed", request_id=listed.id)

    async def cancel(
        self,
        request_id: str,
        actor: str,
        *,
        via: str = "slack",
        reason: str | None = None,
        source: MessageRef | None = None,
    ) -> AccessRequest:
        """Withdraw a pending request, as its requester."""
        life = self.life
        async with life.lock(request_id):
            request = await life.requests.get(request_id)
            await self._refused(request, actor, "cancel", self._check_may_cancel(request, actor))
            now = life.clock.now()
            request = await life.requests.transition(
                request_id,
                S.PENDING,
                S.CANCELLED,
                changes={"decided_by": actor, "decided_at": now, "ended_at": now, "decision_reason": reason},
                audit=life.event(
                    request, actor, "request.cancelled", S.PENDING, S.CANCELLED, {"via": via, "reason": reason}
                ),
            )
            log.info("request.cancelled", request_id=request_id, actor=actor, via=via)
            life.timers.disarm(request_id)
            request = await life.publish(request)
            await life.tell(request, RequesterNotice.CANCELLED)
            return request

    # ── who may ───────────────────────────────────────────────────────────────────────────────

    async def _refused(self, request: AccessRequest, actor: str, action: str, check: Awaitable[str]) -> str:
        """Await `check`; audit and re-raise a refusal. Returns what the check returns (a display name)."""
        try:
            return await check
        except NotAllowed as refusal:
            await self.life.audit.append(
                self.life.event(
                    request, actor, "click.refused", detail={"action": action, "reason": refusal.user_message}
                )
            )
            log.info("click.refused", request_id=request.id, actor=actor, action=action, reason=refusal.user_message)
            raise

    async def _check_may_cancel(self, request: AccessRequest, actor: str) -> str:
        if request.status is not S.PENDING:
            raise AlreadyDecided(request.status.value, request.decided_by)
        if actor != request.requester:
            raise NotAllowed("Only the person who asked can cancel this request.")
        clicker = await self.checks.fresh_user(actor, "you")
        if clicker.deleted:
            raise NotAllowed("Your Slack account is deactivated.")
        return clicker.name or actor

    async def _check_may_end(
        self, request: AccessRequest, actor: str, source: MessageRef | None, clicked: AccessRequest | None = None
    ) -> str:
        if request.status is S.APPROVED:
            raise NotAllowed("This access is still being granted; try again in a moment.")
        if request.status is not S.GRANTED:
            raise AlreadyEnded(request)
        if request.revoked_by is not None:
            raise AlreadyEnded(request, "This access is already being ended; jitbot keeps retrying the revocation.")
        # The button may sit on the message of the grant an extension took over (`clicked`).
        messages = {(r.approval_channel, r.message_ts) for r in (request, clicked) if r is not None}
        if source is not None and not source.direct and (source.channel, source.ts) not in messages:
            # Outside a DM, only the request's own message carries its Revoke now.
            raise NotAllowed("This button does not belong to this request's message.")
        clicker = await self.checks.fresh_user(actor, "you")
        if clicker.deleted:
            raise NotAllowed("Your Slack account is deactivated.")
        if actor == request.requester:
            return clicker.name or actor
        flow = self.life.flow(request.flow)
        users: set[str] | None
        members: frozenset[str] = frozenset()
        if request.approvers is not None:
            users = set(request.approvers)
        elif flow is not None and flow.approvers is not None:
            users = set(flow.approvers.users)
            members = await self._group_members(flow.approvers.usergroups)
        elif flow is not None:
            users = None
        else:  # nobody can say who approves a removed flow: only the requester may end it early
            raise NotAllowed("Only the person who holds this access can end it: its flow is no longer configured.")
        decision = may_decide(
            requester=request.requester,
            clicker=actor,
            allow_self_approval=False,
            approver_users=users,
            approver_group_members=members,
            clicker_is_guest=clicker.guest,
            allow_guests=flow.allow_guests if flow is not None else False,
        )
        if not decision.allowed:
            raise NotAllowed("Only the person who holds this access or an approver of its flow can end it.")
        return clicker.name or actor

    async def _group_members(self, groups: list[str]) -> frozenset[str]:
        members: set[str] = set()
        for group in groups:
            try:
                members |= await self.checks.directory.usergroup_members(group, fresh=True)
            except Exception as exc:  # fail closed: membership that cannot be read decides nothing
                log.warning("directory.unavailable", usergroup=group, error=self.life.scrub(str(exc)))
                raise NotAllowed("Could not check the approvers' user groups with Slack; try again.") from None
        return frozenset(members)


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None
