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

The engine is composed of parts sharing one `core.lifecycle.Lifecycle`: this class (the face of
them all), `core.deciding.Decisions` (Approve and Deny), `core.submitting.Submissions` (checking a
submission, then storing, routing and posting it), `core.decisions.DecisionChecks` (what a click must find true now),
`core.granting.Granting` (calling the strategy and recording the outcome), `core.expiry.Expiry`
(revocation, clean-up, expiry) and `core.recovery.Recovery` (recovery, the sweep). The rules each
keeps are in docs/guarantees.md.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from typing import Any, Generic, Self, TypeVar, cast, overload

import structlog

from core.approvals import ApprovalPolicy
from core.clock import Clock
from core.config_models import JitConfig
from core.deciding import Decisions
from core.decisions import DecisionChecks
from core.early_end import EarlyEnd
from core.end_warning import EndWarnings
from core.errors import NotAllowed
from core.expiry import Expiry
from core.extension import Extensions
from core.granting import Granting
from core.hook_runner import HookRunner
from core.lifecycle import Lifecycle
from core.metrics import Metrics
from core.models import AccessRequest, MessageRef, Target
from core.origin import SLACK
from core.overview import Overview, overview_for
from core.policy_ports import ApprovalStore, ReminderStore
from core.ports import (
    AuditTrail,
    Directory,
    IdentityLookup,
    Notifier,
    NoTimers,
    RequestStore,
    Timers,
)
from core.recovery import Recovery
from core.reminders import Reminders
from core.secrets import SecretRegistry
from core.strategy import Strategy
from core.submitting import Draft, SubmissionRejected, Submissions

__all__ = ["AccessEngine", "Draft", "SubmissionRejected"]  # the submission's names, still importable from here

log = structlog.get_logger("jitbot.engine")

T = TypeVar("T")


class _OfLife(Generic[T]):
    """An engine attribute that is its Lifecycle's attribute of the same name (read-only unless `settable`)."""

    def __init__(self, doc: str, *, settable: bool = False) -> None:
        self.__doc__ = doc
        self.settable = settable
        self.name = ""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    @overload
    def __get__(self, engine: None, owner: type) -> Self: ...
    @overload
    def __get__(self, engine: AccessEngine, owner: type) -> T: ...
    def __get__(self, engine: AccessEngine | None, owner: type) -> T | Self:
        return self if engine is None else cast(T, getattr(engine.life, self.name))

    def __set__(self, engine: AccessEngine, value: T) -> None:
        if not self.settable:  # as a property without a setter
            raise AttributeError(f"property {self.name!r} of 'AccessEngine' object has no setter")
        setattr(engine.life, self.name, value)


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
        self.recovery = Recovery(self.life, self.expiry)
        self.extensions = Extensions(self.life, self.checks)
        self.early_end = EarlyEnd(self.life, self.checks, self.expiry, self.extensions)
        self.warnings = EndWarnings(self.life)
        # The approval policy (several approvals, who may ask) and the reminders: docs/slack-behaviour.md.
        self.policy = ApprovalPolicy(self.life, directory, approvals, self.checks)
        self.reminders = Reminders(self.life, self.directory, reminders)
        self.decisions = Decisions(
            self.life, self.checks, self.policy, self.extensions, self.expiry, self.granting, self.early_end
        )
        self.submissions = Submissions(
            self.life,
            directory,
            self.policy,
            self.extensions,
            self.reminders,
            approve=self.approve,
            deny=self.deny,
            retry_delay=retry_delay,
        )

    # ── what the composition root and the tests reach ─────────────────────────────────────────

    # Each is the Lifecycle's attribute, not a copy: every part of the engine reads it there, so a
    # value the composition root sets (the scheduler, the metrics, a reloaded config) reaches them all.
    config: _OfLife[JitConfig] = _OfLife("The loaded flows file.", settable=True)
    strategies: _OfLife[Mapping[str, Strategy]] = _OfLife("The strategy of each flow, by flow name.", settable=True)
    timers: _OfLife[Timers] = _OfLife(
        "Where revocation and expiry timers are armed (the scheduler, once wired).", settable=True
    )
    metrics: _OfLife[Metrics] = _OfLife(
        "Where strategy calls and revocation lateness are reported (the /metrics adapter, once wired).", settable=True
    )
    retired: _OfLife[dict[str, tuple[Strategy, Target]]] = _OfLife(
        "Live grants of edited or removed flows: the strategy and target each recorded.", settable=True
    )
    requests: _OfLife[RequestStore] = _OfLife("The request store.")
    audit: _OfLife[AuditTrail] = _OfLife("The audit trail.")
    identities: _OfLife[IdentityLookup] = _OfLife("The identity overrides.")
    hooks: _OfLife[HookRunner] = _OfLife("The flows' policy hooks.")

    async def settle(self, timeout: float | None = None) -> int:
        """Wait for the notifications that follow grants and revocations (at most `timeout` s); return how
        many are left."""
        return await self.life.follow_ups.drain(timeout)

    async def cancel_follow_ups(self) -> int:
        """Cancel the notifications still running (at shutdown, once their time is up); return how many."""
        return await self.life.follow_ups.cancel()

    @property
    def retry_delay(self) -> float:
        """The first pause between attempts at a database write or a first post (tests set 0)."""
        return self.submissions.retry_delay

    @retry_delay.setter
    def retry_delay(self, value: float) -> None:
        self.submissions.retry_delay = value
        self.granting.retry_delay = value

    async def revoke(self, request_id: str) -> AccessRequest | None:
        """Do what is due for a request (its revocation, clean-up or an unfinished grant)."""
        return await self.expiry.revoke(request_id)

    async def expire(self, request_id: str) -> AccessRequest | None:
        """Expire a pending request past its request_timeout."""
        return await self.expiry.expire(request_id)

    async def recover(self) -> dict[str, int]:
        """At start: settle what a stop left half-way, then sweep (warnings due during the stop included)."""
        return {**await self.recovery.recover(), "warned": await self.warnings.sweep()}

    async def sweep(self, *, repost: bool = True) -> dict[str, int]:
        """Do everything that is due (the safety net under the timers): reminders and warnings included.
        `repost=False` leaves out posting again the requests that never reached their channel (the
        replicas' frequent due-work poll)."""
        counts = await self.recovery.sweep(repost=repost)
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

    # ── submit (core.submitting) ──────────────────────────────────────────────────────────────

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
        return await self.submissions.prepare(
            flow_name, requester_id, target_name, fields, duration, via=via, token=token
        )

    async def submit(self, draft: Draft, *, via: str | None = None) -> AccessRequest:
        """Store a pending request, consult the flow's hooks, post it for approval, tell the requester."""
        return await self.submissions.submit(draft, via=via)

    # ── decisions (core.deciding) ─────────────────────────────────────────────────────────────

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
        return await self.decisions.approve(
            request_id, actor, reason=reason, by_hook=by_hook, source=source, via=via, token=token
        )

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
        return await self.decisions.deny(
            request_id, actor, reason=reason, by_hook=by_hook, source=source, via=via, token=token
        )
