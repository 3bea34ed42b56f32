"""Extensions: a request for more time on access the person already holds, and the overlap rule.

A request for a target its requester already holds (a live grant of the same flow and target) is an
extension request: it records the grant it extends (`extends`), says so on its message, and is
approved like any request (hooks see `evt.extends`). When it is approved while that access is still
live, the end moves: the extension takes the access over in ONE transaction (pending → approved →
granted for the extension, granted → revoked "handed over" for the grant it replaces), with no
strategy call at all, so there is no gap, no revoke, and no second grant that a system could refuse
as "already a member". The new end is the old end plus the extension's duration. Approved after
the access ended, it is an ordinary grant.

So one access held by one person is always held by exactly one live row, and ends when the last of
its extensions ends. The row that holds it records in its grant_spec the request the access was
first granted as (`granted_as`: the id strategies such as the webhook key their grants on, used for
the revoke) and since when it is held (`held_since`), against which `max_total_duration` (a flow's
cap on a grant plus its extensions) is measured.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any, NoReturn

import structlog

from core.config_models import Flow
from core.decisions import AlreadyEnded, DecisionChecks, duration_allowed
from core.end_warning import warn_at_for
from core.errors import InvalidInput, NotAllowed
from core.lifecycle import SYSTEM, Lifecycle, same_access
from core.models import AccessRequest, TransitionStep
from core.models import RequestStatus as S
from core.ports import RequesterNotice
from core.schema import format_duration

log = structlog.get_logger("jitbot.engine")

TAKE_OVER_TRIES = 3  # another extension may take the access over first: look for its holder again
HANDED_OVER = "extended by request "  # the end_reason of a grant an extension took over, then its id
CHAIN_LIMIT = 10_000  # hand-overs followed at most (a chain is one per extension; this only bounds a loop)


def handed_to(request: AccessRequest) -> str | None:
    """The request that took `request`'s access over (an extension approved while it was live), if any."""
    reason = request.end_reason or ""
    if request.status is S.REVOKED and request.revoked_by is None and reason.startswith(HANDED_OVER):
        return reason[len(HANDED_OVER) :] or None
    return None


class Extensions:
    """Finds the live grant a request extends, checks extensions, and takes access over on approval."""

    def __init__(self, life: Lifecycle, checks: DecisionChecks) -> None:
        self.life = life
        self.checks = checks

    # ── what is held ──────────────────────────────────────────────────────────────────────────

    async def live_holder(self, flow: str, target: str, requester: str) -> AccessRequest | None:
        """The live grant through which `requester` holds `target` of `flow` now, if any (the latest ending)."""
        now = self.life.clock.now()
        live = [
            r
            for r in await self.life.requests.list_live_for(flow, target, requester)
            if r.status is S.GRANTED and r.expires_at is not None and r.expires_at > now and r.revoked_by is None
        ]
        return max(live, key=lambda r: r.expires_at or now, default=None)

    async def successor(self, request_id: str) -> str:
        """The live request that now holds the access `request_id` held, when an extension took it over
        (itself otherwise): a button on an older message or DM acts on the access where it is."""
        request = await self.life.requests.get(request_id)
        if handed_to(request) is None:
            return request_id
        holder = await self.live_holder(request.flow, request.target, request.requester)
        first = (request.grant_spec or {}).get("granted_as") or request.id
        if holder is not None and (holder.grant_spec or {}).get("granted_as") == first:
            return holder.id
        return request_id

    async def ended_early(self, request: AccessRequest) -> AccessRequest | None:
        """The grant through which the access an extension request extends was ended early (Revoke now),
        following hand-overs from the grant it named; None when that access was not ended early."""
        if request.extends is None:
            return None
        current = await self.life.requests.get(request.extends)
        seen = {current.id}
        for _ in range(CHAIN_LIMIT):
            after = handed_to(current)
            if after is None or after in seen:
                break
            current = await self.life.requests.get(after)
            seen.add(current.id)
        return current if current.revoked_by is not None else None

    @staticmethod
    def held_since(holder: AccessRequest) -> datetime:
        """Since when the access of `holder` has been held without a gap (its first grant)."""
        recorded = (holder.grant_spec or {}).get("held_since")
        if isinstance(recorded, str):
            return datetime.fromisoformat(recorded)
        return holder.granted_at or holder.decided_at or holder.created_at

    def total_problem(self, flow: Flow, holder: AccessRequest | None, seconds: int) -> str | None:
        """Why extending `holder` by `seconds` would pass the flow's max_total_duration (None: it would not)."""
        cap = flow.max_total_duration
        if cap is None:
            return None
        if holder is None or holder.expires_at is None:
            total = timedelta(seconds=seconds)
        else:
            total = holder.expires_at + timedelta(seconds=seconds) - self.held_since(holder)
        if total <= cap:
            return None
        left = self.time_left(flow, holder)
        room = f" At most {format_duration(left)} more can be added now." if left else " No more time can be added."
        return (
            f"This flow allows at most {format_duration(cap)} of access in a row (a grant plus its extensions).{room}"
        )

    def time_left(self, flow: Flow, holder: AccessRequest | None) -> timedelta | None:
        """How much more time max_total_duration leaves for `holder` (None: no cap), whole seconds, never negative."""
        cap = flow.max_total_duration
        if cap is None:
            return None
        if holder is None or holder.expires_at is None:
            return cap
        left = cap - (holder.expires_at - self.held_since(holder))
        return max(timedelta(seconds=int(left.total_seconds())), timedelta(0))

    def durations(self, flow: Flow, holder: AccessRequest) -> list[str]:
        """The flow's listed durations that an extension of `holder` may still ask for ([] for a free duration)."""
        spec = flow.duration_field
        left = self.time_left(flow, holder)
        return [
            str(value)
            for value, length in zip(spec.allowed_values or [], spec.duration_values, strict=False)
            if left is None or length <= left
        ]

    # ── the Extend button ─────────────────────────────────────────────────────────────────────

    async def extendable(self, request_id: str, actor: str, seconds: int | None = None) -> tuple[AccessRequest, Flow]:
        """The live grant an Extend click on `request_id` extends, and its flow, when `actor` may extend it
        now by `seconds` (any allowed length when None); refusals are audited and raised."""
        request = await self.life.requests.get(request_id)
        try:
            return await self._extendable(request, actor, seconds)
        except (NotAllowed, InvalidInput) as refusal:
            await self.life.audit.append(
                self.life.event(
                    request, actor, "click.refused", detail={"action": "extend", "reason": refusal.user_message}
                )
            )
            log.info("click.refused", request_id=request_id, actor=actor, action="extend", reason=refusal.user_message)
            raise

    async def _extendable(self, request: AccessRequest, actor: str, seconds: int | None) -> tuple[AccessRequest, Flow]:
        if actor != request.requester:
            raise NotAllowed("Only the person who holds this access can extend it.")
        # The DM's button may be on a grant that an earlier extension already took over: follow the access.
        holder = await self.live_holder(request.flow, request.target, request.requester)
        if holder is None:
            raise AlreadyEnded(request)
        flow = self.life.flow(holder.flow)
        if flow is None:
            raise NotAllowed(f"The flow '{holder.flow}' is no longer in jitbot's configuration.")
        clicker = await self.checks.fresh_user(actor, "you")
        if clicker.deleted:
            raise NotAllowed("Your Slack account is deactivated.")
        key = flow.duration_field.name
        if seconds is None:
            if flow.duration_field.allowed_values and not self.durations(flow, holder):
                raise InvalidInput({key: self.total_problem(flow, holder, 0) or "No more time can be added."})
            left = self.time_left(flow, holder)
            if left is not None and not left:
                raise InvalidInput(
                    {key: "This access is already as long as its flow allows; no more time can be added."}
                )
            return holder, flow
        if seconds <= 0 or not duration_allowed(flow, seconds):
            raise InvalidInput({key: "Choose one of the flow's durations."})
        problem = self.total_problem(flow, holder, seconds)
        if problem:
            raise InvalidInput({key: problem})
        return holder, flow

    @staticmethod
    def fields_for(base: AccessRequest, flow: Flow, seconds: int, fields: Mapping[str, Any] | None) -> dict[str, Any]:
        """The extension's fields: the grant's own answers, then what the person gave, the duration last."""
        merged = {**dict(base.fields), **dict(fields or {})}
        merged[flow.duration_field.name] = format_duration(timedelta(seconds=seconds))
        return merged

    # ── approval ──────────────────────────────────────────────────────────────────────────────

    async def approve_extension(
        self,
        request: AccessRequest,
        flow: Flow,
        actor: str,
        reason: str | None,
        spec: Mapping[str, Any],
        audit_detail: Mapping[str, Any] | None = None,
    ) -> AccessRequest | None:
        """Approve an extension (its lock held) by taking over the live access it extends; None when no
        live grant of exactly that access is left, and the caller grants it as an ordinary request
        (within the flow's cap: beyond it, the click is refused and audited)."""
        life = self.life
        for _ in range(TAKE_OVER_TRIES):
            holder = await self.live_holder(request.flow, request.target, request.requester)
            if holder is None or not same_access(holder.grant_spec, spec):
                # Ended, or the flow's strategy changed since: an ordinary grant of its own length.
                await self._check_ordinary(request, flow, actor)
                return None
            async with life.lock(holder.id), life.access_lock(holder):
                holder = await life.requests.get(holder.id)  # as it is now, under its lock
                now = life.clock.now()
                if (
                    holder.status is not S.GRANTED
                    or holder.revoked_by is not None
                    or holder.expires_at is None
                    or holder.expires_at <= now
                ):
                    continue  # taken over or ended meanwhile: look again
                problem = self.total_problem(flow, holder, request.duration_seconds)
                if problem:
                    await self._refuse(request, actor, problem)
                detail = dict(audit_detail) if audit_detail is not None else {"reason": reason}
                return await self._take_over(request, holder, flow, actor, reason, now, detail)
        await self._check_ordinary(request, flow, actor)
        return None

    async def _check_ordinary(self, request: AccessRequest, flow: Flow, actor: str) -> None:
        """Check an extension whose access is no longer live may be granted as an ordinary request:
        never when that access was ended early (Revoke now is a decision to end it, which an extension
        asked before it must not undo), and within the flow's cap. Refusals are audited and raised."""
        ended = await self.ended_early(request)
        if ended is not None:
            await self._refuse(
                request,
                actor,
                f"The access this request would extend was {ended.end_reason or 'ended early'}: "
                "it cannot be approved. Ask again if the access is still needed.",
            )
        problem = self.total_problem(flow, None, request.duration_seconds)
        if problem:
            await self._refuse(request, actor, problem)

    async def _refuse(self, request: AccessRequest, actor: str, problem: str) -> NoReturn:
        """Audit an approval refused for passing max_total_duration, and raise it."""
        await self.life.audit.append(
            self.life.event(request, actor, "click.refused", detail={"action": "approve", "reason": problem})
        )
        raise NotAllowed(problem)

    async def _take_over(
        self,
        request: AccessRequest,
        holder: AccessRequest,
        flow: Flow,
        actor: str,
        reason: str | None,
        now: datetime,
        approved: Mapping[str, Any],
    ) -> AccessRequest:
        life = self.life
        assert holder.expires_at is not None
        end = holder.expires_at + timedelta(seconds=request.duration_seconds)
        spec = {
            **dict(holder.grant_spec),
            "granted_as": (holder.grant_spec or {}).get("granted_as") or holder.id,
            "held_since": self.held_since(holder).isoformat(),
        }
        moved = {"extends": holder.id, "previous_end": holder.expires_at.isoformat(), "expires_at": end.isoformat()}
        steps = [
            TransitionStep(
                request.id,
                S.PENDING,
                S.APPROVED,
                {
                    "decided_by": actor,
                    "decided_at": now,
                    "decision_reason": reason,
                    "expires_at": end,
                    "grant_spec": spec,
                },
                life.event(request, actor, "request.approved", S.PENDING, S.APPROVED, dict(approved)),
            ),
            TransitionStep(
                request.id,
                S.APPROVED,
                S.GRANTED,
                # No strategy call: the access is already there, held under the first grant's state.
                {"granted_at": now, "grant_state": dict(holder.grant_state), "warn_at": warn_at_for(flow, now, end)},
                life.event(request, SYSTEM, "access.extended", S.APPROVED, S.GRANTED, moved),
            ),
            TransitionStep(
                holder.id,
                S.GRANTED,
                S.REVOKED,
                {
                    "ended_at": now,
                    "end_reason": f"{HANDED_OVER}{request.id}",
                    "warn_at": None,
                    "next_attempt_at": None,
                },
                life.event(holder, SYSTEM, "access.handed_over", S.GRANTED, S.REVOKED, {"access_kept_by": request.id}),
            ),
        ]
        _, extended, handed_over = await life.requests.transition_all(steps)
        log.info("access.extended", request_id=request.id, extends=holder.id, expires_at=end.isoformat())
        life.timers.disarm(holder.id)
        life.timers.disarm(request.id)
        life.timers.arm_revoke(extended.id, end)
        if extended.warn_at is not None:
            life.timers.arm_warn(extended.id, extended.warn_at)
        await life.publish(handed_over)
        extended = await life.publish(extended)
        await life.tell(extended, RequesterNotice.EXTENDED)
        return extended
