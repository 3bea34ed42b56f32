"""AccessEngine: the request lifecycle. The only code that calls strategies, the store and the notifier.

    submit ─▶ pending ─approve─▶ approved ─grant─▶ granted ─revoke (on time)─▶ revoked
                 │                   └─grant failed─▶ failed
                 ├─deny─▶ denied
                 └─request_timeout─▶ expired

Every status change is a compare-and-set with its audit row (storage.requests.RequestRepo), so a
double click, two approvers at once, or a redelivered envelope grant exactly once. The approval
and its end time are saved before the strategy is called: a crash mid-grant is finished by
`recover()` and still revoked at the original end. Slack trouble never blocks the lifecycle: the
database is the truth and the channel message is re-rendered from it.
"""

from __future__ import annotations

import asyncio
import uuid
import weakref
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Mapping

import structlog

from core.clock import Clock
from core.decisions import AlreadyDecided, duration_allowed
from core.errors import InvalidTransition, JitError, NotAllowed, StrategyError
from core.expiry import SYSTEM, ExpiryMixin
from core.hook_runner import ApproversUnavailable, HookRunner
from core.models import AccessRequest, AuditEvent, MessageRef, RequestStatus as S, Subject, Target
from core.policy import NOBODY_MAY_DECIDE, may_decide
from core.ports import Directory, Notifier, RequesterNotice, UserInfo
from core.secrets import scrub
from core.targets import flow_target
from strategies.base import GrantContext, GrantResult, Strategy, SupportsInstructions

log = structlog.get_logger("jitbot.engine")

GRANT_ATTEMPTS = 3
RECORD_ATTEMPTS = 4  # writes of a grant that already happened at the target: retried, never dropped
POST_ATTEMPTS = 3  # posting a new request to its approval channel, before alerting
GUESTS_REFUSED = "Guests and people from other organisations can't request access with this flow."
ANNOUNCE_SLOW_GRANT_AFTER = 1.0  # seconds before the message says "granting…"
STRATEGY_CONCURRENCY = 16  # strategy calls in flight per flow


class SubmissionRejected(JitError):
    """A form submission that cannot become a request; `errors` maps field name ('target', …) to text."""

    def __init__(self, errors: Mapping[str, str]) -> None:
        self.errors = dict(errors)
        super().__init__("; ".join(f"{k}: {v}" for k, v in self.errors.items()))


@dataclass(frozen=True)
class Draft:
    """A checked submission, ready to become a pending request."""

    flow: str
    target: Target
    requester: UserInfo
    subject: Subject
    fields: Mapping[str, Any]
    duration: timedelta


class Timers:
    """Where the engine arms its timers; core.scheduler implements it, tests use a recorder."""

    def arm_revoke(self, request_id: str, when: datetime) -> None: ...

    def arm_expire(self, request_id: str, when: datetime) -> None: ...

    def disarm(self, request_id: str) -> None: ...


class AccessEngine(ExpiryMixin):
    """Runs requests through their lifecycle; see the module docstring."""

    def __init__(
        self,
        *,
        config,
        requests,
        audit,
        identities,
        strategies: Mapping[str, Strategy],
        hooks: HookRunner,
        notifier: Notifier,
        directory: Directory,
        clock: Clock,
        timers: Timers | None = None,
        grant_retry_delay: float = 1.0,
        retry_delay: float = 0.25,
    ) -> None:
        self.config = config
        self.requests = requests
        self.audit = audit
        self.identities = identities
        self.strategies = strategies
        self.hooks = hooks
        self.notifier = notifier
        self.directory = directory
        self.clock = clock
        self.timers = timers or Timers()
        self.grant_retry_delay = grant_retry_delay
        self.retry_delay = retry_delay  # between attempts at a database write or a first post
        self._submitting: set[str] = set()  # requests between creation and their first post
        # Live grants whose flow was edited or removed since they were granted: the strategy and
        # target they recorded, rebuilt at start by the composition root (request id → both).
        self.retired: dict[str, tuple[Strategy, Target]] = {}
        self._locks: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()
        self._gates: dict[str, asyncio.Semaphore] = {}

    # ── submit ────────────────────────────────────────────────────────────────────────────────

    async def prepare(
        self, flow_name: str, requester_id: str, target_name: str, fields: Mapping[str, Any], duration: timedelta
    ) -> Draft:
        """Check a submission: the target exists and the requester can be matched in its system."""
        flow = self.config.flow(flow_name)
        target = self.target(flow, target_name)
        if target is None:
            raise SubmissionRejected({"target": "Choose one of the listed targets."})
        requester = await self.directory.lookup_user(requester_id, fresh=True)
        if requester.guest and not flow.allow_guests:
            log.info("submission.guest_refused", flow=flow.name, requester=requester_id)
            raise SubmissionRejected({"target": GUESTS_REFUSED})
        if requester.deleted:
            raise SubmissionRejected({"target": "Your Slack account is deactivated."})
        subject = await self._subject(flow.name, requester_id, requester.email, requester.name)
        ctx = GrantContext(request_id="validation", flow=flow.name, target=target, subject=subject, fields=dict(fields))
        strategy = self.strategies[flow.name]
        issues = await strategy.validate(ctx)
        if issues:
            for issue in issues:
                log.info("submission.identity_rejected", flow=flow.name, requester=requester_id, detail=issue.detail)
            raise SubmissionRejected({"target": " ".join(i.user_message for i in issues)})
        return Draft(flow.name, target, requester, subject, dict(fields), duration)

    async def submit(self, draft: Draft) -> AccessRequest:
        """Store a pending request, consult the flow's hooks, post it for approval, tell the requester."""
        flow = self.config.flow(draft.flow)
        now = self.clock.now()
        request = AccessRequest(
            id=uuid.uuid4().hex[:16],
            flow=flow.name,
            target=draft.target.name,
            requester=draft.requester.slack_id,
            requester_email=draft.requester.email,
            created_at=now,
            duration_seconds=int(draft.duration.total_seconds()),
            fields=dict(draft.fields),
            approval_channel=flow.approval_channel,
            timeout_at=now + flow.request_timeout if flow.request_timeout else None,
        )
        self._submitting.add(request.id)
        try:
            await self.requests.create(
                request,
                self._audit(request, draft.requester.slack_id, "request.created", detail={
                    "target": request.target, "duration_seconds": request.duration_seconds, "fields": request.fields,
                }),
            )
            log.info("request.created", request_id=request.id, flow=flow.name, target=request.target)
            request, decision = await self._consult_hooks(flow, draft, request)
            # The hook's verdict comes before anything with buttons is posted: an approver must
            # never be able to click a request that on_request denies.
            if decision is not None and decision.kind == "deny":
                return await self.deny(request.id, self.hooks.actor(flow, "on_request"), reason=decision.reason,
                                       by_hook=True)
            if decision is not None and decision.kind == "approve":
                try:
                    return await self.approve(request.id, self.hooks.actor(flow, "on_request"),
                                              reason=decision.reason, by_hook=True)
                except NotAllowed as refused:  # the present says no (e.g. deactivated): humans decide
                    log.info("fast_track.refused", request_id=request.id, reason=refused.user_message)
            request = await self._post_for_approval(request)
            if request.timeout_at:
                self.timers.arm_expire(request.id, request.timeout_at)
            return await self.requests.get(request.id)
        finally:
            self._submitting.discard(request.id)

    async def _consult_hooks(self, flow, draft: Draft, request: AccessRequest):
        """Run on_request / get_approvers / get_approval_channel; store the routing; return the verdict."""
        if not self.hooks.active(flow):
            return request, None
        evt = self.hooks.event(request, flow, user=draft.subject)
        decision = await self.hooks.on_request(flow, evt, request)
        approvers = await self.hooks.approvers(flow, evt, request)
        channel = await self.hooks.approval_channel(flow, evt, request)
        routing: dict[str, Any] = {}
        if isinstance(approvers, ApproversUnavailable):
            # Fail closed: the flow's static approvers decide; with none, nobody may.
            if flow.approvers is None:
                routing["approvers"] = ()
                await self._alert(
                    f"Nobody may approve request {request.id} ({flow.name}/{request.target}): get_approvers "
                    "failed and the flow names no approvers. It will expire unless it is withdrawn.", request)
        elif approvers is not None:
            routing["approvers"] = tuple(approvers)
        if channel:
            routing["approval_channel"] = channel
        if routing:
            request = await self.requests.update(
                request.id, routing, audit=self._audit(request, self.hooks.actor(flow), "request.routed", detail=routing)
            )
        return request, decision

    async def _post_for_approval(self, request: AccessRequest) -> AccessRequest:
        """Post a new request to its channel, retrying; if it cannot be posted, alert and tell the truth."""
        error: BaseException | None = None
        for attempt in range(POST_ATTEMPTS):
            try:
                ts = await self.notifier.publish(request)
            except Exception as exc:
                error = exc
                log.warning("publish.retrying", request_id=request.id, attempt=attempt + 1, error=scrub(str(exc)))
                await asyncio.sleep(self.retry_delay * (attempt + 1))
                continue
            request = await self.requests.update(request.id, {"message_ts": ts})
            await self._tell(request, RequesterNotice.SUBMITTED)
            return request
        alerted = await self._alert(
            f"Request {request.id} ({request.flow}/{request.target}) could not be posted to its approval channel "
            f"{request.approval_channel}: {scrub(str(error))}. jitbot keeps trying every minute; nobody can "
            "approve it until then.", request)
        await self._tell(request, RequesterNotice.NOT_POSTED, detail=(
            "The operators have been alerted, and jitbot keeps trying to post it." if alerted else
            "The operators could not be alerted either: please tell them, quoting the request id."))
        return request

    # ── decisions ─────────────────────────────────────────────────────────────────────────────

    async def approve(self, request_id: str, actor: str, *, reason: str | None = None, by_hook: bool = False,
                      source: MessageRef | None = None) -> AccessRequest:
        """Approve a pending request (after checking the click against now) and grant it."""
        async with self._lock(request_id):
            request = await self.requests.get(request_id)
            if request.status is S.PENDING and self._timed_out(request):
                await self._expire_locked(request)
                raise NotAllowed("This request expired: nobody decided before its time limit.")
            flow = await self._check_decision(request, actor, "approve", by_hook=by_hook, source=source)
            now = self.clock.now()
            request = await self.requests.transition(
                request_id, S.PENDING, S.APPROVED,
                changes={
                    "decided_by": actor, "decided_at": now, "decision_reason": reason,
                    # Saved before the strategy runs: a crash mid-grant still ends at this time.
                    "expires_at": now + timedelta(seconds=request.duration_seconds),
                    # How to revoke it even after the flow is edited or removed from the config.
                    "grant_spec": flow.grant_spec(request.target),
                },
                audit=self._audit(request, actor, "request.approved", S.PENDING, S.APPROVED, {"reason": reason}),
            )
            log.info("request.approved", request_id=request_id, actor=actor)
            self.timers.disarm(request_id)
            return await self._grant(request, flow)

    async def deny(self, request_id: str, actor: str, *, reason: str | None = None, by_hook: bool = False,
                   source: MessageRef | None = None) -> AccessRequest:
        """Deny a pending request (after the decider checks)."""
        async with self._lock(request_id):
            request = await self.requests.get(request_id)
            await self._check_decision(request, actor, "deny", by_hook=by_hook, source=source)
            request = await self.requests.transition(
                request_id, S.PENDING, S.DENIED,
                changes={"decided_by": actor, "decided_at": self.clock.now(), "decision_reason": reason},
                audit=self._audit(request, actor, "request.denied", S.PENDING, S.DENIED, {"reason": reason}),
            )
            log.info("request.denied", request_id=request_id, actor=actor)
            self.timers.disarm(request_id)
            request = await self._publish(request)
            await self._tell(request, RequesterNotice.DENIED)
            return request

    async def _check_decision(self, request: AccessRequest, actor: str, action: str, *, by_hook: bool,
                              source: MessageRef | None):
        """Check a decision against the present; return the flow, or audit the refusal and raise NotAllowed."""
        try:
            flow = await self._refusal(request, actor, action, by_hook=by_hook, source=source)
        except NotAllowed as refusal:
            await self.audit.append(
                self._audit(request, actor, "click.refused", detail={"action": action, "reason": refusal.user_message})
            )
            log.info("click.refused", request_id=request.id, actor=actor, action=action, reason=refusal.user_message)
            raise
        return flow

    async def _refusal(self, request: AccessRequest, actor: str, action: str, *, by_hook: bool,
                       source: MessageRef | None):
        if request.status is not S.PENDING:
            raise AlreadyDecided(request.status.value, request.decided_by)
        if source is not None and (source.channel, source.ts) != (request.approval_channel, request.message_ts):
            raise NotAllowed("This button does not belong to this request's message.")
        flow = self._flow(request.flow)
        if flow is None:
            raise NotAllowed(f"The flow '{request.flow}' is no longer in jitbot's configuration.")
        if not by_hook:
            await self._check_decider(request, flow, actor)
        if action == "approve":
            await self._check_still_grantable(request, flow)
        if not by_hook and self.hooks.has(flow, f"on_{action}"):
            actor_info = await self.directory.lookup_user(actor)
            evt = self.hooks.event(request, flow, user=await self._requester_info(request), actor=actor_info)
            ignored = await self.hooks.on_click(flow, f"on_{action}", evt, request)
            if ignored is not None:
                raise NotAllowed(ignored)
        return flow

    async def _check_decider(self, request: AccessRequest, flow, actor: str) -> None:
        """Whether `actor` may decide, read fresh: a removed group member or a guest is refused."""
        if request.approvers == ():
            raise NotAllowed(NOBODY_MAY_DECIDE)
        clicker = await self._fresh_user(actor, "you")
        if request.approvers is not None:
            users, members = set(request.approvers), frozenset()
        elif flow.approvers is not None:
            users, members = set(flow.approvers.users), await self._group_members(flow.approvers.usergroups)
        else:
            users, members = None, frozenset()
        decision = may_decide(
            requester=request.requester, clicker=actor, allow_self_approval=flow.allow_self_approval,
            approver_users=users, approver_group_members=members,
            clicker_is_guest=clicker.guest, allow_guests=flow.allow_guests,
        )
        if not decision.allowed:
            raise NotAllowed(decision.reason)

    async def _check_still_grantable(self, request: AccessRequest, flow) -> None:
        """What an approval needs to be true now, not only when the request was made."""
        if flow_target(flow, request.target) is None:
            raise NotAllowed(f"The target '{request.target}' is no longer in the flow's configuration.")
        if not duration_allowed(flow, request.duration_seconds):
            raise NotAllowed("The requested duration is no longer allowed by the flow; ask again.")
        requester = await self._fresh_user(request.requester, "the requester")
        if requester.deleted:
            raise NotAllowed("The requester's Slack account is deactivated.")
        if requester.guest and not flow.allow_guests:
            raise NotAllowed(GUESTS_REFUSED)

    async def _fresh_user(self, slack_id: str, who: str) -> UserInfo:
        try:
            return await self.directory.lookup_user(slack_id, fresh=True)
        except NotAllowed:
            raise
        except Exception as exc:  # fail closed: an unverifiable person decides nothing
            log.warning("directory.unavailable", user=slack_id, error=scrub(str(exc)))
            raise NotAllowed(f"Could not check {who} with Slack just now; try again in a moment.") from None

    async def _group_members(self, groups) -> frozenset[str]:
        members: set[str] = set()
        for group in groups:
            try:
                members |= await self.directory.usergroup_members(group, fresh=True)
            except Exception as exc:
                log.warning("directory.unavailable", usergroup=group, error=scrub(str(exc)))
                raise NotAllowed("Could not check the approvers' user groups with Slack; try again.") from None
        return frozenset(members)

    # ── grant ─────────────────────────────────────────────────────────────────────────────────

    async def _grant(self, request: AccessRequest, flow) -> AccessRequest:
        strategy = self._strategy_for(request)
        granted_at = self.clock.now()
        ctx = await self._context(request, granted_at=granted_at)
        attempt = asyncio.ensure_future(self._attempt_grant(strategy, ctx))
        # The approver sees "granting…" only when the grant is slow: an edit before every grant
        # would put a Slack round trip between the click and the strategy call.
        done, _ = await asyncio.wait({attempt}, timeout=ANNOUNCE_SLOW_GRANT_AFTER)
        if not done:
            request = await self._publish(request)
        result, error = await attempt
        if error is not None:
            return await self._grant_failed(request, ctx, strategy, error)

        state = {str(k): str(v) for k, v in (result.state or {}).items()}
        recorded = await self._record_grant(request, granted_at, state, strategy)
        if recorded is None:
            return await self.requests.get(request.id)
        request = recorded
        log.info("access.granted", request_id=request.id, expires_at=request.expires_at.isoformat())
        self.timers.arm_revoke(request.id, request.expires_at)
        request = await self._publish(request)
        instructions = result.instructions
        if instructions is None and isinstance(strategy, SupportsInstructions):
            instructions = strategy.instructions(ctx)
        await self._tell(request, RequesterNotice.GRANTED, detail=instructions)
        if flow is not None:
            await self._after(flow, "after_grant", request)
        return request

    async def _record_grant(self, request: AccessRequest, granted_at, state, strategy) -> AccessRequest | None:
        """Write approved → granted; the target already changed, so a failed write is retried, and
        when it keeps failing the revoke timer is armed anyway and the sweep finishes the job."""
        for attempt in range(1, RECORD_ATTEMPTS + 1):
            try:
                return await self.requests.transition(
                    request.id, S.APPROVED, S.GRANTED,
                    changes={"granted_at": granted_at, "grant_state": state},
                    audit=self._audit(request, SYSTEM, "access.granted", S.APPROVED, S.GRANTED,
                                      {"expires_at": request.expires_at.isoformat(), "system": strategy.system}),
                )
            except InvalidTransition:
                raise
            except Exception as exc:
                log.error("grant.record_failed", request_id=request.id, attempt=attempt, error=scrub(str(exc)))
                if attempt < RECORD_ATTEMPTS:
                    await asyncio.sleep(self.retry_delay * attempt)
        # Still `approved` in the database: the revoke timer and the sweep both pick such a row up.
        self.timers.arm_revoke(request.id, request.expires_at)
        await self._alert(
            f"Request {request.id} ({request.flow}/{request.target}) was granted but the database refused to "
            "record it; jitbot retries on its next sweep and revokes it on time.", request)
        return None

    async def _attempt_grant(self, strategy: Strategy, ctx: GrantContext) -> tuple[GrantResult | None, BaseException | None]:
        """Call the strategy's grant, retrying retryable failures; return (result, None) or (None, error)."""
        for attempt in range(1, GRANT_ATTEMPTS + 1):
            try:
                async with self._gate(ctx.flow):
                    return await strategy.grant(ctx), None
            except StrategyError as exc:
                if not exc.retryable or attempt == GRANT_ATTEMPTS:
                    return None, exc
                log.warning("grant.retrying", request_id=ctx.request_id, attempt=attempt, error=scrub(str(exc)))
                await asyncio.sleep(self.grant_retry_delay * attempt)
            except Exception as exc:  # an adapter bug must still end as a visible failed grant
                log.exception("grant.crashed", request_id=ctx.request_id)
                return None, exc
        raise AssertionError("unreachable: the last attempt always returns")

    async def _grant_failed(self, request, ctx, strategy, error: BaseException) -> AccessRequest:
        reason = scrub(getattr(error, "user_message", None) or str(error)) or type(error).__name__
        # A grant can fail after part of it took effect (a timeout after the write, an assignment
        # still in progress); the row keeps what the clean-up needs and stays due (next_attempt_at)
        # until a revoke has succeeded, so a failed grant never leaves access behind.
        state = {str(k): str(v) for k, v in (getattr(error, "grant_state", None) or {}).items()}
        try:
            request = await self.requests.transition(
                request.id, S.APPROVED, S.FAILED,
                changes={"failure_reason": reason, "grant_state": state, "next_attempt_at": self.clock.now(),
                         "revoke_attempts": 0},
                audit=self._audit(request, SYSTEM, "grant.failed", S.APPROVED, S.FAILED,
                                  {"error": scrub(str(error)), "type": type(error).__name__}),
            )
        except InvalidTransition:
            raise
        except Exception as exc:  # still `approved`: the sweep settles it
            log.error("grant.failure_record_failed", request_id=request.id, error=scrub(str(exc)))
            return request
        log.error("grant.failed", request_id=request.id, error=scrub(str(error)))
        request = await self._clean_up(request) or request
        request = await self._publish(request)
        await self._tell(request, RequesterNotice.FAILED)
        await self._alert(f"Grant failed for request {request.id} ({request.flow}/{request.target}): {reason}", request)
        return request

    # ── helpers ───────────────────────────────────────────────────────────────────────────────

    def target(self, flow, target_name: str) -> Target | None:
        """The flow's target of that name as a domain Target, or None."""
        return flow_target(flow, target_name)

    def _flow(self, name: str):
        """The flow of that name in the current config, or None when it was removed."""
        try:
            return self.config.flow(name)
        except KeyError:
            return None

    def _strategy_for(self, request: AccessRequest) -> Strategy | None:
        """The strategy that acts on this request's access: the one it recorded when its flow has
        changed since, else its flow's (None when neither exists)."""
        retired = self.retired.get(request.id)
        return retired[0] if retired is not None else self.strategies.get(request.flow)

    def _timed_out(self, request: AccessRequest) -> bool:
        return request.timeout_at is not None and request.timeout_at <= self.clock.now()

    async def _subject(self, flow_name: str, slack_id: str, email: str | None, name: str | None = None,
                       strategy: Strategy | None = None) -> Subject:
        strategy = strategy or self.strategies.get(flow_name)
        key = strategy.identity_key if strategy is not None else "*"
        identity = await self.identities.get(slack_id, key)
        return Subject(slack_id=slack_id, email=email, identity=identity or email, name=name)

    async def _context(self, request: AccessRequest, *, granted_at: datetime | None = None) -> GrantContext:
        # Built from the stored row and our own identity table only: a revocation must not
        # depend on Slack being reachable.
        retired = self.retired.get(request.id)
        flow = self._flow(request.flow)
        if retired is not None:
            target = retired[1]
        else:
            target = (flow_target(flow, request.target) if flow is not None else None) or Target(
                request.target, request.target, {})
        return GrantContext(
            request_id=request.id, flow=request.flow, target=target,
            subject=await self._subject(request.flow, request.requester, request.requester_email,
                                        strategy=self._strategy_for(request)),
            fields=request.fields, granted_at=granted_at or request.granted_at, expires_at=request.expires_at,
        )

    async def _alert(self, text: str, request: AccessRequest | None = None) -> bool:
        """Tell the operators; never raises (an alert that fails must not stop a grant or a revocation)."""
        try:
            await self.notifier.alert(text, request)
            return True
        except Exception:
            log.exception("alert.failed", request_id=request.id if request else None)
            return False

    async def _after(self, flow, hook: str, request: AccessRequest) -> None:
        """Run an after_* hook, when the flow has one (no event is built otherwise)."""
        if self.hooks.has(flow, hook):
            evt = self.hooks.event(request, flow, user=await self._requester_info(request))
            await self.hooks.observe(flow, hook, evt, request)

    async def _requester_info(self, request: AccessRequest) -> Subject:
        # Hooks see the identity override too; read locally so no hook call depends on Slack.
        return await self._subject(request.flow, request.requester, request.requester_email)

    async def _publish(self, request: AccessRequest) -> AccessRequest:
        try:
            ts = await self.notifier.publish(request)
        except Exception:
            log.exception("publish.failed", request_id=request.id, status=request.status.value)
            return request
        if ts and ts != request.message_ts:
            request = await self.requests.update(request.id, {"message_ts": ts})
        return request

    async def _tell(self, request: AccessRequest, notice: RequesterNotice, detail: str | None = None) -> None:
        try:
            await self.notifier.notify_requester(request, notice, detail)
        except Exception:
            log.exception("notify.failed", request_id=request.id, notice=notice.value)

    def _gate(self, flow_name: str) -> asyncio.Semaphore:
        # At most this many strategy calls per flow at once: 1,000 revocations due in the same second
        # must queue, not open 1,000 connections to one target system and time out together.
        gate = self._gates.get(flow_name)
        if gate is None:
            gate = self._gates[flow_name] = asyncio.Semaphore(STRATEGY_CONCURRENCY)
        return gate

    def _lock(self, request_id: str) -> asyncio.Lock:
        lock = self._locks.get(request_id)
        if lock is None:
            lock = asyncio.Lock()
            self._locks[request_id] = lock
        return lock

    def _audit(self, request: AccessRequest, actor: str, action: str, status_from: S | None = None,
               status_to: S | None = None, detail: Mapping[str, Any] | None = None) -> AuditEvent:
        return AuditEvent(
            at=self.clock.now(), actor=actor, action=action, request_id=request.id,
            status_from=status_from.value if status_from else None,
            status_to=status_to.value if status_to else None,
            detail=dict(detail or {}),
        )
