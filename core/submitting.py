"""Submitting a request: check a form submission (`prepare`), then store it, consult the flow's hooks,
route it and post it for approval (`submit`).

`Submissions` is one of the engine's parts (core.engine composes it, sharing one
`core.lifecycle.Lifecycle`); a hook's verdict on a new request goes through the engine's own
decisions (`approve`, `deny`), handed in at construction. A request of a hooked flow is stored
with nobody allowed to decide it until its hooks' answer is stored (docs/guarantees.md).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Any, Protocol

import structlog

from core.approvals import ApprovalPolicy
from core.claims import request_lease
from core.config_models import Flow, JitConfig
from core.decisions import GUESTS_REFUSED
from core.errors import InvalidInput, NotAllowed
from core.extension import Extensions
from core.granting import retry_policy
from core.hook_events import Approve, Deny
from core.hook_runner import ApproversUnavailable
from core.lifecycle import Lifecycle
from core.models import AccessRequest, Subject, Target
from core.models import RequestStatus as S
from core.origin import SLACK, origin
from core.ports import Directory, RequesterNotice, UserInfo
from core.reminders import Reminders
from core.resubmission import once, request_id_for
from core.retry import call
from core.strategy import GrantContext, Strategy
from core.targets import flow_target

log = structlog.get_logger("jitbot.engine")

POST_ATTEMPTS = 3  # posting a new request to its approval channel, before alerting


class SubmissionRejected(InvalidInput):
    """A form submission that cannot become a request; `errors` maps field name ('target', …) to text."""


@dataclass(frozen=True)
class Draft:
    """A checked submission, ready to become a pending request."""

    flow: str
    target: Target
    requester: UserInfo
    subject: Subject
    fields: Mapping[str, Any]
    duration: timedelta
    extends: str | None = None  # the live grant of the same target this request extends (core.extension)
    via: str = SLACK  # how the request arrived: "slack" (the modal) or "api"
    token: str | None = None  # the API token's name, when it came through the API
    key: str | None = None  # what makes the submission one, so a redelivery is not a second request (a Slack view)


class Decide(Protocol):
    """One of the engine's decisions (approve or deny), as a hook's verdict on a new request calls it."""

    async def __call__(
        self, request_id: str, actor: str, *, reason: str | None = None, by_hook: bool = False
    ) -> AccessRequest: ...


class Submissions:
    """Checks submissions and turns them into pending requests, routed and posted for approval."""

    def __init__(
        self,
        life: Lifecycle,
        directory: Directory,
        policy: ApprovalPolicy,
        extensions: Extensions,
        reminders: Reminders,
        *,
        approve: Decide,
        deny: Decide,
        retry_delay: float,
    ) -> None:
        self.life = life
        self.directory = directory
        self.policy = policy
        self.extensions = extensions
        self.reminders = reminders
        self.approve = approve
        self.deny = deny
        self.retry_delay = retry_delay  # the first pause between attempts at a first post (tests set 0)

    @property
    def config(self) -> JitConfig:
        """The loaded flows file (the engine may swap it)."""
        return self.life.config

    @property
    def strategies(self) -> Mapping[str, Strategy]:
        """The strategy of each flow, by flow name."""
        return self.life.strategies

    async def prepare(
        self,
        flow_name: str,
        requester_id: str,
        target_name: str,
        fields: Mapping[str, Any],
        duration: timedelta,
        *,
        via: str = SLACK,
        token: str | None = None,
    ) -> Draft:
        """Check a submission: the target exists and the requester may ask and can be matched in its system."""
        flow = self.config.flow(flow_name)
        target = flow_target(flow, target_name)
        if target is None:
            raise SubmissionRejected({"target": "Choose one of the listed targets."})
        requester = await self.directory.lookup_user(requester_id, fresh=True)
        if requester.guest and not flow.allow_guests:
            log.info("submission.guest_refused", flow=flow.name, requester=requester_id)
            raise SubmissionRejected({"target": GUESTS_REFUSED})
        if requester.deleted:
            raise SubmissionRejected({"target": "Your Slack account is deactivated."})
        try:  # before any hook runs: on_request never sees someone the flow does not let ask
            await self.policy.check_requesters(flow, requester_id, fresh=True)
        except NotAllowed as refused:
            log.info("submission.requester_refused", flow=flow.name, requester=requester_id)
            raise SubmissionRejected({"target": refused.user_message}) from None
        subject = await self.life.subject(flow.name, requester_id, requester.email, requester.name)
        # A request for access the person already holds is an extension of it (core.extension).
        holder = await self.extensions.live_holder(flow.name, target.name, requester_id)
        problem = self.extensions.total_problem(flow, holder, int(duration.total_seconds()))
        if problem:
            raise SubmissionRejected({flow.duration_field.name: problem})
        ctx = GrantContext(request_id="validation", flow=flow.name, target=target, subject=subject, fields=dict(fields))
        issues = await self.strategies[flow.name].validate(ctx)
        if issues:
            for issue in issues:
                log.info("submission.identity_rejected", flow=flow.name, requester=requester_id, detail=issue.detail)
            raise SubmissionRejected({"target": " ".join(i.user_message for i in issues)})
        return Draft(
            flow.name,
            target,
            requester,
            subject,
            dict(fields),
            duration,
            extends=holder.id if holder else None,
            via=via,
            token=token,
        )

    async def submit(self, draft: Draft, *, via: str | None = None) -> AccessRequest:
        """Store a pending request, consult the flow's hooks, post it for approval, tell the requester.

        `via` overrides how the draft says it arrived (an extension asked for with a button or the API).
        A draft with a `key` makes its request once, however often it is submitted (core.resubmission).
        """
        if draft.key is not None:
            return await once(self.life, draft.key, lambda: self._submit(draft, via))
        return await self._submit(draft, via)

    async def _submit(self, draft: Draft, via: str | None) -> AccessRequest:
        if via is not None and via != draft.via:
            draft = replace(draft, via=via)
        life = self.life
        flow = self.config.flow(draft.flow)
        now = life.clock.now()
        hooked = life.hooks.active(flow)
        request = AccessRequest(
            id=request_id_for(draft.key),
            flow=flow.name,
            target=draft.target.name,
            requester=draft.requester.slack_id,
            requester_email=draft.requester.email,
            created_at=now,
            duration_seconds=int(draft.duration.total_seconds()),
            fields=dict(draft.fields),
            approval_channel=flow.approval_channel,
            timeout_at=now + flow.request_timeout if flow.request_timeout else None,
            # Until its hooks have spoken and their answer is stored, nobody may decide a request of
            # a hooked flow: a crash or a failed write in between must not leave it open to anyone.
            approvers=() if hooked else None,
            grant_to=self.policy.grant_to(flow, draft.subject),
            extends=draft.extends,
        )
        life.remember(draft.requester)
        life.submitting.add(request.id)
        # Between creation and its first post a request is this replica's: another one's sweep must not
        # post it again. Always free (the id is new); released in `finally`.
        claims = life.guards.claims
        if claims is not None:
            await claims.take(request_lease(request.id))
        try:
            await life.requests.create(
                request,
                life.event(
                    request,
                    draft.requester.slack_id,
                    "request.created",
                    detail={
                        "target": request.target,
                        "duration_seconds": request.duration_seconds,
                        "fields": request.fields,
                        **origin(draft.via, draft.token),
                        **({"extends": request.extends} if request.extends else {}),
                    },
                ),
            )
            log.info("request.created", request_id=request.id, flow=flow.name, target=request.target)
            decision: Approve | Deny | None = None
            if hooked:
                decision = await life.hooks.on_request(
                    flow, life.hooks.event(request, flow, user=draft.subject, via=draft.via), request
                )
                # The hook's verdict comes before anything with buttons is posted.
                if isinstance(decision, Deny):
                    return await self.deny(
                        request.id, life.hooks.actor(flow, "on_request"), reason=decision.reason, by_hook=True
                    )
                request = await self._route(flow, draft, request)
            if isinstance(decision, Approve):
                try:
                    return await self.approve(
                        request.id, life.hooks.actor(flow, "on_request"), reason=decision.reason, by_hook=True
                    )
                except NotAllowed as refused:  # the present says no (e.g. deactivated): humans decide
                    log.info("fast_track.refused", request_id=request.id, reason=refused.user_message)
            # Under the request's lock: a click on the message the moment it appears (before its ts is
            # stored) waits for the post to be recorded instead of being refused as a foreign message.
            async with life.lock(request.id):
                # Read again under the lock: while the hooks ran, its requester may have cancelled it (from
                # the Home tab), and that decision was posted and told. It is not posted again as submitted.
                request = await life.requests.get(request.id)
                if request.status is not S.PENDING:
                    return request
                request = await self._post_for_approval(await self.policy.close_if_unreachable(flow, request))
            if request.timeout_at:
                life.timers.arm_expire(request.id, request.timeout_at)
            self.reminders.arm_first(request)
            return await life.requests.get(request.id)
        finally:
            life.submitting.discard(request.id)
            if claims is not None:
                await claims.give_back(request_lease(request.id))

    async def _route(self, flow: Flow, draft: Draft, request: AccessRequest) -> AccessRequest:
        """Ask get_approvers / get_approval_channel and store the answer (which opens the request)."""
        life = self.life
        evt = life.hooks.event(request, flow, user=draft.subject, via=draft.via)
        approvers = await life.hooks.approvers(flow, evt, request)
        channel = await life.hooks.approval_channel(flow, evt, request)
        routing: dict[str, Any] = {"approvers": None}
        if isinstance(approvers, ApproversUnavailable):
            # Fail closed: the flow's static approvers decide; with none, nobody may.
            if flow.approvers is None:
                routing["approvers"] = ()
                await life.alert(
                    "Nobody may approve this request",
                    request,
                    error="get_approvers failed and the flow names no approvers",
                    action=(
                        "It expires at its request_timeout."
                        if request.timeout_at
                        else "It stays pending with no buttons: the flow has no request_timeout."
                    ),
                )
        elif approvers is not None:  # fail closed when they cannot reach approvals_required
            routing["approvers"] = await self.policy.checked_approvers(flow, request, approvers)
        if channel:
            routing["approval_channel"] = channel
        return await life.requests.update(
            request.id, routing, audit=life.event(request, life.hooks.actor(flow), "request.routed", detail=routing)
        )

    async def _post_for_approval(self, request: AccessRequest) -> AccessRequest:
        """Post a new request to its channel, retrying; if it cannot be posted, alert and tell the truth."""
        life = self.life
        try:
            ts = await call(
                lambda: life.notifier.publish(request),
                retry_policy(self.retry_delay, POST_ATTEMPTS),
                sleep=asyncio.sleep,
                retry_if=lambda _: True,
                before_sleep=lambda exc, _: log.warning(
                    "publish.retrying", request_id=request.id, error=self.life.scrub(str(exc))
                ),
            )
        except Exception as exc:
            error: BaseException | None = exc
        else:
            request = await life.requests.update(request.id, {"message_ts": ts})
            await life.tell(request, RequesterNotice.SUBMITTED)
            return request
        alerted = await life.alert(
            f"A request could not be posted to its approval channel {request.approval_channel}",
            request,
            error=str(error),
            action="jitbot keeps trying every minute; nobody can approve it until then.",
        )
        await life.tell(
            request,
            RequesterNotice.NOT_POSTED,
            detail=(
                "The operators have been alerted, and jitbot keeps trying to post it."
                if alerted
                else "The operators could not be alerted either: please tell them, quoting the request id."
            ),
        )
        return request
