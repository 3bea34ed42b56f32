"""The approval policy of a flow: several approvals, who may ask, deny reasons, and who is told.

`ApprovalPolicy` is one of the engine's parts (it shares the engine's `Lifecycle`); `AccessEngine`
delegates to it. The rules, written for operators in docs/slack-behaviour.md and docs/hooks.md:

- `approvals_required: N` needs N distinct people who may decide; the requester never counts,
  even with `allow_self_approval`. Each approval is a compare-and-set with its audit row
  (`ApprovalStore.add`); a repeat by the same person changes nothing and is told so. One Deny
  denies. A fast-track by `on_request` counts as every approval.
- When `get_approvers` answers, its list replaces the static approvers; a list that cannot reach
  N (fewer than N people besides the requester) fails closed: nobody may decide, and the
  operators are told.
- `requesters:` is checked before anything else of a submission, hooks included: `on_request`
  never sees, and cannot let in, someone the flow does not list.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import structlog

from core.config_models import Flow
from core.decisions import GUESTS_REFUSED, AlreadyDecided, DecisionChecks
from core.errors import InvalidTransition, NotAllowed
from core.lifecycle import SYSTEM, Lifecycle
from core.models import AccessRequest, Subject
from core.policy_ports import ApprovalStore
from core.ports import Directory

log = structlog.get_logger("jitbot.engine")

DENY_REASON_MAX = 500  # characters: a deny reason is shown on the message and in a DM


class AlreadyApproved(NotAllowed):
    """A second Approve by someone whose approval is already counted."""


def clean_reason(reason: str | None) -> str | None:
    """A decision reason as stored: stripped, None when blank, at most DENY_REASON_MAX characters."""
    if reason is None:
        return None
    # A NUL cannot be stored on PostgreSQL (the API refuses it; a Slack modal or a hook could still send one).
    text = reason.replace("\x00", "").strip()
    if not text:
        return None
    return text if len(text) <= DENY_REASON_MAX else text[: DENY_REASON_MAX - 1] + "…"


def still_needed(flow: Flow | None, request: AccessRequest) -> int:
    """How many more approvals a pending request needs."""
    required = flow.approvals_required if flow is not None else 1
    return max(required - len(request.approvals), 0)


class ApprovalPolicy:
    """Counts approvals, checks who may ask, and checks a flow's approvers can reach its threshold."""

    def __init__(
        self,
        life: Lifecycle,
        directory: Directory,
        approvals: ApprovalStore | None,
        checks: DecisionChecks | None = None,
    ) -> None:
        self.life = life
        self.directory = directory
        self.approvals = approvals
        self.checks = checks  # re-checks earlier approvers at the last approval

    # ── several approvals ─────────────────────────────────────────────────────────────────────

    async def count(
        self, request: AccessRequest, flow: Flow, actor: str, *, origin: Mapping[str, str] | None = None
    ) -> tuple[AccessRequest, bool]:
        """Count `actor`'s approval (already checked: they may decide); return the request and whether
        it now has every approval it needs. Raises AlreadyApproved for a repeat (audited).
        `origin` (core.origin: via, token) goes into each audit row."""
        origin = dict(origin or {})
        required = flow.approvals_required
        if required <= 1:
            return request, True
        if self.approvals is None:  # a wiring error: never let one approval stand for several
            raise NotAllowed("jitbot cannot count approvals here (no approval store); the operators must fix it.")
        if actor == request.requester:
            await self._refuse(
                request, actor, "Your own approval never counts towards the approvals this flow needs.", origin=origin
            )
        counted = len(request.approvals) + 1
        event = self.life.event(
            request,
            actor,
            "request.approval_counted",
            detail={"approvals": counted, "required": required, **origin},
        )
        try:
            request, added = await self.approvals.add(request.id, actor, event)
        except InvalidTransition as lost:
            current = await self.life.requests.get(request.id)
            raise AlreadyDecided(lost.current, current.decided_by) from None
        if not added and len(request.approvals) >= required:
            added = True  # every approval was counted but the approval itself was not recorded: finish it
        elif not added:
            more = still_needed(flow, request)
            await self._refuse(
                request,
                actor,
                f"You have already approved this request; it needs {more} more approval"
                f"{'' if more == 1 else 's'} from someone else.",
                already=True,
                origin=origin,
            )
        log.info("request.approval_counted", request_id=request.id, actor=actor, approvals=len(request.approvals))
        if len(request.approvals) >= required:
            request = await self._drop_stale(request, flow, actor)
        if len(request.approvals) >= required:
            return request, True
        await self.life.publish(request)  # "1 of 2 approvals: @bob", buttons kept
        return request, False

    async def _drop_stale(self, request: AccessRequest, flow: Flow, actor: str) -> AccessRequest:
        """At the last approval, check the earlier approvers against now: one who may no longer decide
        (left the group, became a guest, was deactivated) no longer counts. Slack down: the click waits."""
        if self.checks is None:
            return request
        stale = [a for a in request.approvals if a != actor and not await self.checks.still_decides(request, flow, a)]
        if not stale:
            return request
        log.info("request.approvals_withdrawn", request_id=request.id, approvers=stale)
        assert self.approvals is not None  # count() refuses before this without a store
        return await self.approvals.withdraw(
            request.id,
            stale,
            self.life.event(
                request,
                SYSTEM,
                "request.approvals_withdrawn",
                detail={"approvers": stale, "reason": "no longer allowed to decide this request"},
            ),
        )

    async def _refuse(
        self,
        request: AccessRequest,
        actor: str,
        reason: str,
        *,
        already: bool = False,
        origin: Mapping[str, str] | None = None,
    ) -> None:
        detail = {"action": "approve", "reason": reason, **(origin or {})}
        await self.life.audit.append(self.life.event(request, actor, "click.refused", detail=detail))
        log.info("click.refused", request_id=request.id, actor=actor, action="approve", reason=reason)
        raise (AlreadyApproved if already else NotAllowed)(reason)

    async def checked_approvers(self, flow: Flow, request: AccessRequest, approvers: Iterable[str]) -> tuple[str, ...]:
        """A get_approvers answer as stored: as given when it can reach approvals_required without the
        requester; else () (nobody may decide) and the operators are told."""
        named = tuple(approvers)
        others = len(set(named) - {request.requester})
        if others >= flow.approvals_required:
            return named
        await self.life.alert(
            "Nobody may approve this request",
            request,
            error=(
                f"get_approvers named {others} people besides the requester, "
                f"but the flow needs {flow.approvals_required} approvals"
            ),
            action="It expires at its request_timeout." if request.timeout_at else "It stays pending.",
        )
        return ()

    async def close_if_unreachable(self, flow: Flow, request: AccessRequest) -> AccessRequest:
        """Fail closed when the flow's static approvers, less the requester, are fewer than approvals_required
        (users listed alone; groups are checked at the click): nobody may decide, and the operators are told."""
        approvers = flow.approvers
        if request.approvers is not None or flow.approvals_required <= 1 or approvers is None or approvers.usergroups:
            return request
        others = len(set(approvers.users) - {request.requester})
        if others >= flow.approvals_required:
            return request
        why = (
            f"the flow needs {flow.approvals_required} approvals, and its approvers besides the requester are {others}"
        )
        await self.life.alert(
            "Nobody may approve this request",
            request,
            error=why,
            action="It expires at its request_timeout." if request.timeout_at else "It stays pending.",
        )
        return await self.life.requests.update(
            request.id,
            {"approvers": ()},
            audit=self.life.event(request, SYSTEM, "request.routed", detail={"approvers": [], "reason": why}),
        )

    def grant_to(self, flow: Flow, subject: Subject) -> dict[str, str]:
        """Who a request's grant will be made for, shown while it waits (nothing for approval-only flows)."""
        strategy = self.life.strategies.get(flow.name)
        if flow.approval_only or strategy is None or not subject.identity:
            return {}
        return {"identity": subject.identity, "system": strategy.system}

    # ── who may ask ───────────────────────────────────────────────────────────────────────────

    async def may_request(self, flow: Flow, slack_id: str, *, fresh: bool = True) -> None:
        """Return when `slack_id` may ask with `flow`; raise NotAllowed with the reason otherwise.

        `fresh=False` may use the directory's cache: only for what is shown (the flow picker). A
        submission is always checked fresh. If Slack cannot answer, the person may not ask.
        """
        try:
            person = await self.directory.lookup_user(slack_id, fresh=fresh)
        except NotAllowed:
            raise
        except Exception as exc:
            log.warning("directory.unavailable", user=slack_id, error=self.life.scrub(str(exc)))
            raise NotAllowed("Could not check your Slack account just now; try again in a moment.") from None
        if person.deleted:
            raise NotAllowed("Your Slack account is deactivated.")
        if person.guest and not flow.allow_guests:
            raise NotAllowed(GUESTS_REFUSED)
        await self.check_requesters(flow, slack_id, fresh=fresh)

    async def check_requesters(self, flow: Flow, slack_id: str, *, fresh: bool = True) -> None:
        """Raise NotAllowed unless the flow's `requesters:` (absent: everyone) includes `slack_id`."""
        checks = self.checks or DecisionChecks(self.life, self.directory)
        if await checks.listed_requester(flow, slack_id, fresh=fresh):
            return
        raise NotAllowed(f"You are not one of the people who may request {flow.label}; ask its owners to add you.")

    # ── at start ──────────────────────────────────────────────────────────────────────────────

    async def check_at_start(self) -> list[str]:
        """What the flows file cannot show by itself, each alerted: a user group (of approvers,
        requesters or escalate_to) Slack cannot list, and approvers' user groups holding fewer people
        than approvals_required. Returns the problems found."""
        problems: list[str] = []
        known: dict[str, frozenset[str] | None] = {}

        async def members(group: str) -> frozenset[str] | None:
            if group not in known:
                try:
                    known[group] = await self.directory.usergroup_members(group, fresh=True)
                except Exception as exc:
                    log.warning("directory.unavailable", usergroup=group, error=self.life.scrub(str(exc)))
                    known[group] = None
            return known[group]

        for flow in self.life.config.flows:
            escalate = flow.reminders.escalate_to if flow.reminders is not None else None
            for role, named in (
                ("approvers", flow.approvers),
                ("requesters", flow.requesters),
                ("escalate_to", escalate),
            ):
                for group in named.usergroups if named is not None else []:
                    if await members(group) is None:
                        problems.append(f"{flow.name}: {role} user group {group}")
                        await self.life.alert(
                            f"Flow '{flow.name}' names user group {group} in {role}, "
                            "but Slack could not list its members",
                            action="Its members can neither ask nor decide through it until the group is fixed.",
                        )
            approvers = flow.approvers
            if flow.approvals_required <= 1 or approvers is None or not approvers.usergroups:
                continue
            if self.life.hooks.active(flow) and self.life.hooks.has(flow, "get_approvers"):
                continue  # the hook's answer is checked per request
            people = set(approvers.users)
            for group in approvers.usergroups:
                people |= await members(group) or frozenset()
            if len(people) < flow.approvals_required:
                problems.append(f"{flow.name}: {len(people)} approvers for {flow.approvals_required} approvals")
                await self.life.alert(
                    f"Flow '{flow.name}' needs {flow.approvals_required} approvals, but its approvers are only "
                    f"{len(people)} people",
                    action="Its requests cannot be approved until more people are added to its approvers.",
                )
        return problems
