"""AccessEngine: the request lifecycle. The only code that calls strategies, the store and the notifier.

    submit ─▶ pending ─approve─▶ approved ─grant─▶ granted ─revoke (on time)─▶ revoked
                 │                   └─grant failed─▶ failed (clean-up revoke until it succeeds)
                 ├─deny─▶ denied
                 └─request_timeout─▶ expired

Every status change is a compare-and-set with its audit row (storage.requests.RequestRepo), so a
double click, two approvers at once, or a redelivered envelope grant exactly once. The approval
and its end time are saved before the strategy is called: a crash mid-grant is finished by
`recover()` (or the next sweep) and still revoked at the original end. Slack trouble never blocks
the lifecycle: the database is the truth and the channel message is re-rendered from it.

The engine is composed of four parts sharing one `core.lifecycle.Lifecycle`: this class (submit and
decisions), `core.decisions.DecisionChecks` (what a click must find true now), `core.granting.Granting`
(calling the strategy and recording the outcome) and `core.expiry.Expiry` (revocation, clean-up,
expiry, recovery, the sweep). The rules each keeps are
in docs/guarantees.md.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Any

import structlog

from core.approvals import ApprovalPolicy, clean_reason
from core.claims import request_lease
from core.clock import Clock
from core.config_models import Flow, JitConfig
from core.decisions import GUESTS_REFUSED, DecisionChecks
from core.early_end import EarlyEnd
from core.end_warning import EndWarnings, warn_at_for
from core.errors import InvalidInput, NotAllowed
from core.expiry import Expiry
from core.extension import Extensions
from core.granting import Granting, retry_policy
from core.hook_events import Approve, Deny
from core.hook_runner import ApproversUnavailable, HookRunner
from core.lifecycle import Lifecycle
from core.metrics import Metrics
from core.models import AccessRequest, MessageRef, Subject, Target
from core.models import RequestStatus as S
from core.origin import SLACK, origin
from core.overview import Overview, overview_for
from core.policy_ports import ApprovalStore, ReminderStore
from core.ports import (
    AuditTrail,
    Directory,
    IdentityLookup,
    Notifier,
    NoTimers,
    RequesterNotice,
    RequestStore,
    Timers,
    UserInfo,
)
from core.reminders import Reminders
from core.resubmission import once, request_id_for
from core.retry import call
from core.secrets import SecretRegistry
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


class AccessEngine:
    """Runs requests through their lifecycle; see the module docstring."""

    def __init__(
        self,
        *,
        config: JitConfig,
        requests: RequestStore,
        audit: AuditTrail,
        identities: IdentityLookup,
        strategies: Mapping[str, Strategy],
        hooks: HookRunner,
        notifier: Notifier,
        directory: Directory,
        clock: Clock,
        timers: Timers | None = None,
        grant_retry_delay: float = 1.0,
        retry_delay: float = 0.25,
        secrets: SecretRegistry | None = None,
        approvals: ApprovalStore | None = None,
        reminders: ReminderStore | None = None,
    ) -> None:
        self.life = Lifecycle(
            config=config,
            requests=requests,
            audit=audit,
            identities=identities,
            strategies=strategies,
            hooks=hooks,
            notifier=notifier,
            clock=clock,
            timers=timers or NoTimers(),
            # The runtime passes its registry; without one, the registry the config was loaded with.
            secrets=config.secrets if secrets is None else secrets,
        )
        self.directory = directory
        self.checks = DecisionChecks(self.life, directory)
        # Expiry finishes a row left approved by granting it; Granting cleans up through Expiry.
        self.expiry = Expiry(self.life, grant=lambda request, flow: self.granting.grant(request, flow))
        self.granting = Granting(self.life, self.expiry, grant_retry_delay=grant_retry_delay, retry_delay=retry_delay)
        self.extensions = Extensions(self.life, self.checks)
        self.early_end = EarlyEnd(self.life, self.checks, self.expiry, self.extensions)
        self.warnings = EndWarnings(self.life)
        self._post_retry_delay = retry_delay
        # The approval policy (several approvals, who may ask) and the reminders: docs/slack-behaviour.md.
        self.policy = ApprovalPolicy(self.life, directory, approvals, self.checks)
        self.reminders = Reminders(self.life, self.directory, reminders)

    # ── what the composition root and the tests reach ─────────────────────────────────────────

    @property
    def config(self) -> JitConfig:
        """The loaded flows file."""
        return self.life.config

    @config.setter
    def config(self, value: JitConfig) -> None:
        self.life.config = value

    @property
    def strategies(self) -> Mapping[str, Strategy]:
        """The strategy of each flow, by flow name."""
        return self.life.strategies

    @strategies.setter
    def strategies(self, value: Mapping[str, Strategy]) -> None:
        self.life.strategies = value

    @property
    def timers(self) -> Timers:
        """Where revocation and expiry timers are armed (the scheduler, once wired)."""
        return self.life.timers

    @timers.setter
    def timers(self, value: Timers) -> None:
        self.life.timers = value

    @property
    def metrics(self) -> Metrics:
        """Where strategy calls and revocation lateness are reported (the /metrics adapter, once wired)."""
        return self.life.metrics

    @metrics.setter
    def metrics(self, value: Metrics) -> None:
        self.life.metrics = value

    async def settle(self, timeout: float | None = None) -> int:
        """Wait for the notifications that follow revocations (at most `timeout` s); return how many are left."""
        return await self.life.follow_ups.drain(timeout)

    async def cancel_follow_ups(self) -> int:
        """Cancel the notifications still running (at shutdown, once their time is up); return how many."""
        return await self.life.follow_ups.cancel()

    @property
    def retired(self) -> dict[str, tuple[Strategy, Target]]:
        """Live grants of edited or removed flows: the strategy and target each recorded."""
        return self.life.retired

    @retired.setter
    def retired(self, value: dict[str, tuple[Strategy, Target]]) -> None:
        self.life.retired = value

    @property
    def requests(self) -> RequestStore:
        """The request store."""
        return self.life.requests

    @property
    def audit(self) -> AuditTrail:
        """The audit trail."""
        return self.life.audit

    @property
    def identities(self) -> IdentityLookup:
        """The identity overrides."""
        return self.life.identities

    @property
    def hooks(self) -> HookRunner:
        """The flows' policy hooks."""
        return self.life.hooks

    @property
    def retry_delay(self) -> float:
        """The first pause between attempts at a database write or a first post (tests set 0)."""
        return self._post_retry_delay

    @retry_delay.setter
    def retry_delay(self, value: float) -> None:
        self._post_retry_delay = value
        self.granting.retry_delay = value

    async def revoke(self, request_id: str) -> AccessRequest | None:
        """Do what is due for a request (its revocation, clean-up or an unfinished grant)."""
        return await self.expiry.revoke(request_id)

    async def expire(self, request_id: str) -> AccessRequest | None:
        """Expire a pending request past its request_timeout."""
        return await self.expiry.expire(request_id)

    async def recover(self) -> dict[str, int]:
        """At start: settle what a stop left half-way, then sweep (warnings due during the stop included)."""
        return {**await self.expiry.recover(), "warned": await self.warnings.sweep()}

    async def sweep(self, *, repost: bool = True) -> dict[str, int]:
        """Do everything that is due (the safety net under the timers): reminders and warnings included.
        `repost=False` leaves out posting again the requests that never reached their channel (the
        replicas' frequent due-work poll)."""
        counts = await self.expiry.sweep(repost=repost)
        counts["reminded"] = await self.reminders.sweep()
        counts["warned"] = await self.warnings.sweep()
        return counts

    async def may_request(self, flow_name: str, slack_id: str, *, fresh: bool = True) -> None:
        """Return when `slack_id` may ask with the flow; NotAllowed with the reason otherwise (Slack, API)."""
        try:
            flow = self.config.flow(flow_name)
        except KeyError:
            raise NotAllowed(f"There is no flow named '{flow_name}'.") from None
        await self.policy.may_request(flow, slack_id, fresh=fresh)

    async def warn(self, request_id: str) -> AccessRequest | None:
        """Send a granted request's end-of-access warning when it is due."""
        return await self.warnings.warn(request_id)

    # ── after approval: revoke now, cancel, extend, overview ──────────────────────────────────

    async def revoke_now(
        self, request_id: str, actor: str, *, via: str = "slack", source: MessageRef | None = None
    ) -> AccessRequest:
        """End a live grant now (the requester, or anyone who may approve its flow)."""
        return await self.early_end.revoke_now(request_id, actor, via=via, source=source)

    async def cancel(
        self, request_id: str, actor: str, *, via: str = "slack", reason: str | None = None
    ) -> AccessRequest:
        """Withdraw a pending request (its requester only)."""
        return await self.early_end.cancel(request_id, actor, via=via, reason=reason)

    async def prepare_extension(
        self, request_id: str, actor: str, duration_seconds: int, fields: Mapping[str, Any] | None = None
    ) -> Draft:
        """Check an extension of the live grant `request_id` by `actor` and return it as a draft."""
        holder, flow = await self.extensions.extendable(request_id, actor, duration_seconds)
        merged = self.extensions.fields_for(holder, flow, duration_seconds, fields)
        return await self.prepare(flow.name, actor, holder.target, merged, timedelta(seconds=duration_seconds))

    async def extend(
        self,
        request_id: str,
        actor: str,
        duration_seconds: int,
        fields: Mapping[str, Any] | None = None,
        *,
        via: str = "slack",
    ) -> AccessRequest:
        """Ask for more time on a live grant: a new request linked to it, routed like any other."""
        return await self.submit(await self.prepare_extension(request_id, actor, duration_seconds, fields), via=via)

    async def overview(self, user: str, limit: int) -> Overview:
        """`user`'s live grants, pending requests and requests awaiting their decision (display only)."""
        return await overview_for(self.life, self.directory, user, limit)

    # ── submit ────────────────────────────────────────────────────────────────────────────────

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

    # ── decisions ─────────────────────────────────────────────────────────────────────────────

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
