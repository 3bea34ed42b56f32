"""Decisions: Approve and Deny of a pending request, checked against now, then granted or recorded.

A click, an API call or a hook's verdict arrives here (through `core.engine.AccessEngine`). Under the
request's lock it is checked (`core.decisions.DecisionChecks`), counted towards the approvals the flow
needs (`core.approvals.ApprovalPolicy`), and the approval is saved with its end time before the
strategy is called (`core.granting.Granting`); an approved extension hands over the access it
extends (`core.extension.Extensions`). The rules are in docs/guarantees.md.
"""

from __future__ import annotations

from datetime import timedelta

import structlog

from core.approvals import ApprovalPolicy, clean_reason
from core.burst import Deciding
from core.decisions import DecisionChecks
from core.early_end import EarlyEnd
from core.end_warning import warn_at_for
from core.errors import NotAllowed
from core.expiry import Expiry
from core.extension import Extensions
from core.granting import Granting
from core.lifecycle import Lifecycle
from core.models import AccessRequest, MessageRef
from core.models import RequestStatus as S
from core.origin import SLACK, origin
from core.ports import RequesterNotice

log = structlog.get_logger("jitbot.engine")


class Decisions:
    """Approve and Deny; see the module docstring."""

    def __init__(
        self,
        life: Lifecycle,
        checks: DecisionChecks,
        policy: ApprovalPolicy,
        extensions: Extensions,
        expiry: Expiry,
        granting: Granting,
        early_end: EarlyEnd,
    ) -> None:
        self.life = life
        self.checks = checks
        self.policy = policy
        self.extensions = extensions
        self.expiry = expiry
        self.granting = granting
        self.early_end = early_end

    async def approve(
        self,
        request_id: str,
        actor: str,
        *,
        reason: str | None = None,
        by_hook: bool = False,
        source: MessageRef | None = None,
        via: str = SLACK,
        token: str | None = None,
    ) -> AccessRequest:
        """Approve a pending request (after checking the click against now) and grant it.

        `via` ("slack" or "api") and the API token's name go into the audit rows and `evt.via`.
        """
        life = self.life
        with life.deciding() as deciding:
            return await self._approve(
                deciding, request_id, actor, reason=reason, by_hook=by_hook, source=source, via=via, token=token
            )

    async def _approve(
        self,
        deciding: Deciding,
        request_id: str,
        actor: str,
        *,
        reason: str | None,
        by_hook: bool,
        source: MessageRef | None,
        via: str,
        token: str | None,
    ) -> AccessRequest:
        life = self.life
        async with life.lock(request_id):
            request = await life.requests.get(request_id)
            if request.status is S.PENDING and life.timed_out(request):
                await self.expiry.expire_locked(request)
                raise NotAllowed("This request expired: nobody decided before its time limit.")
            flow = await self.checks.check(
                request, actor, "approve", by_hook=by_hook, source=source, via=via, token=token
            )
            if not by_hook:  # a fast-track by on_request counts as every approval
                request, complete = await self.policy.count(request, flow, actor, origin=origin(via, token))
                if not complete:
                    return request
            now = life.clock.now()
            spec = dict(flow.grant_spec(request.target))
            # The identity the grant is made for: its revoke goes to the same one, whatever changes.
            spec["identity"] = (await life.subject(flow.name, request.requester, request.requester_email)).identity
            # What the approval's audit row says, whichever way it goes (an extension's take-over too).
            approved = {
                "reason": reason,
                **({"approvals": list(request.approvals)} if request.approvals else {}),
                **origin(via, token, by_hook=by_hook),
            }
            if request.extends is not None:
                extended = await self.extensions.approve_extension(request, flow, actor, reason, spec, approved)
                if extended is not None:
                    return extended  # else the access it extends has ended: an ordinary grant
            now = life.clock.now()
            expires_at = now + timedelta(seconds=request.duration_seconds)
            request = await life.requests.transition(
                request_id,
                S.PENDING,
                S.APPROVED,
                changes={
                    "decided_by": actor,
                    "decided_at": now,
                    "decision_reason": reason,
                    # Saved before the strategy runs: a crash mid-grant still ends at this time.
                    "expires_at": expires_at,
                    "warn_at": warn_at_for(flow, now, expires_at),
                    # How to revoke it even after the flow is edited or removed from the config.
                    "grant_spec": spec,
                },
                audit=life.event(
                    request,
                    actor,
                    "request.approved",
                    S.PENDING,
                    S.APPROVED,
                    approved,
                ),
            )
            log.info("request.approved", request_id=request_id, actor=actor)
            life.timers.disarm(request_id)
            deciding.done()  # from here on it is the grant
            return await self.granting.grant(request, flow)

    async def deny(
        self,
        request_id: str,
        actor: str,
        *,
        reason: str | None = None,
        by_hook: bool = False,
        source: MessageRef | None = None,
        via: str = SLACK,
        token: str | None = None,
    ) -> AccessRequest:
        """Deny a pending request (after the decider checks); the requester's own Deny cancels it.

        `reason` is bounded and shown to everyone; `via` and `token` as for approve.
        """
        life = self.life
        reason = clean_reason(reason)
        if not by_hook and (await life.requests.get(request_id)).requester == actor:
            return await self.early_end.cancel(request_id, actor, via=via, reason=reason, source=source)
        async with life.lock(request_id):
            request = await life.requests.get(request_id)
            await self.checks.check(request, actor, "deny", by_hook=by_hook, source=source, via=via, token=token)
            request = await life.requests.transition(
                request_id,
                S.PENDING,
                S.DENIED,
                changes={"decided_by": actor, "decided_at": life.clock.now(), "decision_reason": reason},
                audit=life.event(
                    request,
                    actor,
                    "request.denied",
                    S.PENDING,
                    S.DENIED,
                    {"reason": reason, **origin(via, token, by_hook=by_hook)},
                ),
            )
            log.info("request.denied", request_id=request_id, actor=actor)
            life.timers.disarm(request_id)
            request = await life.publish(request)
            await life.tell(request, RequesterNotice.DENIED)
            return request
