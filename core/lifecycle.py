"""What every step of a request's life uses, declared once: the stores, the outside world, time, and
the helpers that keep their rules.

The engine (`core.engine`), the decision checks (`core.decisions`) and the clock side
(`core.expiry`, `core.recovery`) each take a `Lifecycle` in their constructor, so their shared collaborators are
explicit and typed. Its helpers keep three rules in one place: every audit row is built the same way,
notifications are best effort (a failed DM, edit or alert is logged, never raised), and a request is
acted on by one coroutine at a time (per-request locks) with at most `STRATEGY_CONCURRENCY` strategy
calls per flow.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Mapping
from contextlib import asynccontextmanager
from dataclasses import replace
from datetime import datetime
from typing import Any, TypeVar

import structlog

from core.burst import Burst, Deciding
from core.claims import Guard, Guards, request_lease
from core.clock import Clock
from core.config_models import Flow, JitConfig
from core.errors import ChatUnavailable
from core.flow_cache import FlowCache
from core.follow_ups import FollowUps, Lane
from core.hook_runner import HookRunner
from core.metrics import NO_METRICS, Metrics, timed_call
from core.models import CHAIN_KEYS, AccessRequest, AuditEvent, RequestStatus, Subject, Target
from core.ports import (
    Alert,
    AuditTrail,
    IdentityLookup,
    Notifier,
    RequesterNotice,
    RequestStore,
    Timers,
    UserInfo,
)
from core.retry import MESSAGE_EDIT, Backoff, call
from core.secrets import SecretRegistry
from core.strategy import GrantContext, Strategy
from core.targets import flow_target

log = structlog.get_logger("jitbot.engine")

T = TypeVar("T")

SYSTEM = "system"  # the audit actor for what the bot does on its own
STRATEGY_CONCURRENCY = 16  # strategy calls in flight per flow
PEOPLE_REMEMBERED = 10_000
# With replicas: how many times an edit is made again because the row changed while it was on its way.
CATCH_UP_EDITS = 3


def same_access(one: Mapping[str, Any], other: Mapping[str, Any]) -> bool:
    """Whether two recorded grant specs are exactly the same access (whichever request holds it)."""
    return {k: v for k, v in one.items() if k not in CHAIN_KEYS} == {
        k: v for k, v in other.items() if k not in CHAIN_KEYS
    }


def shown(request: AccessRequest) -> tuple[object, ...]:
    """What a request's channel message shows of it (handlers/access_blocks.py renders these)."""
    r = request
    return (
        r.status,
        r.approvals,
        r.decided_by,
        r.decision_reason,
        r.expires_at,
        r.ended_at,
        r.revoked_by,
        r.end_reason,
        r.failure_reason,
        r.timeout_at,
        tuple(sorted(r.grant_to.items())),
    )


class Lifecycle:
    """The collaborators and shared helpers of the engine's parts; see the module docstring."""

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
        clock: Clock,
        timers: Timers,
        secrets: SecretRegistry,
    ) -> None:
        self.config = config
        self.secrets = secrets
        self.requests = requests
        self.audit = audit
        self.identities = identities
        self.strategies = strategies
        self.hooks = hooks
        self.notifier = notifier
        self.clock = clock
        self.timers = timers
        # Live grants whose flow was edited or removed since they were granted: the strategy and
        # target they recorded, rebuilt at start by the composition root (request id → both).
        self.retired: dict[str, tuple[Strategy, Target]] = {}
        self.submitting: set[str] = set()  # requests between creation and their first post
        # Per-request and per-access locks; with replicas (`guards.claims`), each is also a database lease.
        self.guards = Guards()
        self._gates: dict[str, asyncio.Semaphore] = {}
        self.metrics: Metrics = NO_METRICS  # the composition root wires the /metrics adapter
        self.follow_ups = FollowUps()  # notifications that must not hold up a revocation
        # Clicks between their arrival and their strategy call: notifications wait for them (`quiet`).
        self.burst = Burst()
        # People seen at submit and at a click (insertion-ordered: the oldest goes first), so the
        # audit trail names the actor by email and name without asking Slack while writing it.
        self._people: dict[str, UserInfo] = {}
        self._derived = FlowCache()  # see `derived`

    def scrub(self, text: str) -> str:
        """`text` with every secret this bot knows replaced by '***' (for logs, audit rows, messages)."""
        return self.secrets.scrub(text)

    # ── what a request refers to ──────────────────────────────────────────────────────────────

    def flow(self, name: str) -> Flow | None:
        """The flow of that name in the current config, or None when it was removed."""
        try:
            return self.config.flow(name)
        except KeyError:
            return None

    def target_of(self, flow: Flow, name: str) -> Target | None:
        """The flow's target `name` as strategies and hooks see it (None when the flow has none), built
        once per loaded flow: a reloaded config is a new Flow object, so nothing stale is served."""
        return self.derived(flow, f"target:{name}", lambda: flow_target(flow, name))

    def derived(self, flow: Flow, what: str, build: Callable[[], T]) -> T:
        """`build()`'s value for this Flow object, built on first use: what only changes with the config."""
        return self._derived.get(flow, what, build)

    def strategy_for(self, request: AccessRequest) -> Strategy | None:
        """The strategy that acts on this request's access: the one it recorded when its flow has
        changed since, else its flow's (None when neither exists)."""
        retired = self.retired.get(request.id)
        return retired[0] if retired is not None else self.strategies.get(request.flow)

    def timed_out(self, request: AccessRequest) -> bool:
        """Whether a pending request is past its request_timeout."""
        return request.timeout_at is not None and request.timeout_at <= self.clock.now()

    async def subject(
        self,
        flow_name: str,
        slack_id: str,
        email: str | None,
        name: str | None = None,
        strategy: Strategy | None = None,
    ) -> Subject:
        """A person as a strategy sees them: their identity override for its system, else the email."""
        strategy = strategy or self.strategies.get(flow_name)
        key = strategy.identity_key if strategy is not None else "*"
        identity = await self.identities.get(slack_id, key)
        return Subject(slack_id=slack_id, email=email, identity=identity or email, name=name)

    async def requester(self, request: AccessRequest) -> Subject:
        """The requester as hooks see them (identity override included), read locally, never from Slack."""
        return await self.subject(
            request.flow, request.requester, request.requester_email, strategy=self.strategy_for(request)
        )

    async def context(self, request: AccessRequest, *, granted_at: datetime | None = None) -> GrantContext:
        """What the strategy gets, built from the stored row and our identity table only: a revocation
        must not depend on Slack being reachable."""
        retired = self.retired.get(request.id)
        flow = self.flow(request.flow)
        if retired is not None:
            target = retired[1]
        else:
            target = (self.target_of(flow, request.target) if flow is not None else None) or Target(
                request.target, request.target, {}
            )
        spec = request.grant_spec or {}
        recorded = spec.get("identity")
        if isinstance(recorded, str) and recorded:
            # The identity the grant was made for (recorded at approval): an override changed since must
            # not redirect the revoke, and the identity table need not be read again.
            subject = Subject(request.requester, request.requester_email, recorded)
        else:
            subject = await self.requester(request)
        held_since = spec.get("held_since")
        return GrantContext(
            # An extension holds the access its first grant made: the strategy sees that grant's id.
            request_id=str(spec.get("granted_as") or request.id),
            flow=request.flow,
            target=target,
            subject=subject,
            fields=request.fields,
            granted_at=granted_at
            or (datetime.fromisoformat(held_since) if isinstance(held_since, str) else request.granted_at),
            expires_at=request.expires_at,
        )

    # ── the record ────────────────────────────────────────────────────────────────────────────

    def event(
        self,
        request: AccessRequest,
        actor: str,
        action: str,
        status_from: RequestStatus | None = None,
        status_to: RequestStatus | None = None,
        detail: Mapping[str, Any] | None = None,
    ) -> AuditEvent:
        """An audit row about `request`, at the clock's now, with the actor's email and name when known."""
        person = self._people.get(actor)
        email = person.email if person else (request.requester_email if actor == request.requester else None)
        return AuditEvent(
            at=self.clock.now(),
            actor=actor,
            action=action,
            request_id=request.id,
            status_from=status_from.value if status_from else None,
            status_to=status_to.value if status_to else None,
            detail=dict(detail or {}),
            flow=request.flow,
            target=request.target,
            actor_email=email,
            actor_name=person.name if person else None,
        )

    def remember(self, person: UserInfo) -> None:
        """Keep a person's email and name for the audit rows of what they do next (bounded, most recent)."""
        self._people.pop(person.slack_id, None)
        self._people[person.slack_id] = person
        if len(self._people) > PEOPLE_REMEMBERED:
            self._people.pop(next(iter(self._people)))

    # ── best-effort notifications ─────────────────────────────────────────────────────────────

    async def publish(self, request: AccessRequest, *, retry: Backoff | None = None) -> AccessRequest:
        """Post or edit the request's channel message, trying again on `retry`'s pauses (when given) while
        the chat system is unavailable; a Slack or store failure is logged, never raised. While edits of
        this request are still owed in the background (`follow_ups`), this one queues behind them."""
        if self.follow_ups.owed(request.id, Lane.MESSAGE):
            # An edit (not a first post, whatever this copy carries): what it queues behind posts first.
            self.follow_ups.add(request.id, lambda: self._publish(request, retry), lane=Lane.MESSAGE, what="publish")
            return request
        return await self._publish(request, retry)

    def announce(
        self,
        request: AccessRequest,
        tell: Callable[[], Awaitable[object]],
        *,
        what: str,
        after: Callable[[], Awaitable[object]] | None = None,
    ) -> None:
        """Tell people about a recorded change in the background: the channel message, edited (retried
        while Slack refuses it) in the message lane, and `tell()` (the DM) in the person lane. Neither
        waits for the other; each waits for `after()` first."""
        # A first post when the request has no message yet and none is on its way in the message lane.
        first_post = request.message_ts is None and not self.follow_ups.owed(request.id, Lane.MESSAGE)
        self.follow_ups.add(
            request.id,
            lambda: self.publish(request, retry=MESSAGE_EDIT),
            lane=Lane.MESSAGE,
            what=what,
            after=after,
            first_post=first_post,
        )
        self.follow_ups.add(request.id, tell, lane=Lane.PERSON, what=what, after=after)

    async def _publish(self, request: AccessRequest, retry: Backoff | None) -> AccessRequest:
        sent = request
        request = await self._publish_once(request, retry)
        if self.guards.claims is None:
            # One process: a later change's edit queues behind this one (follow-up lanes, the request
            # lock), so the last edit to land shows the last state.
            return request
        # Replicas: another may have changed the request, and edited the message, while this edit was
        # on its way (Slack throttling it): Slack cannot compare-and-set a message, so look again.
        for _ in range(CATCH_UP_EDITS):
            if self.follow_ups.owed_after_current(request.id, Lane.MESSAGE):
                break  # a later edit of this process is queued: it sends what is newer
            try:
                now = await self.requests.get(request.id)
            except Exception:
                log.exception("publish.read_failed", request_id=request.id)
                break
            # Against what was sent: the row saved with a first post's ts may already be newer.
            if shown(now) == shown(sent):
                break
            sent = now
            request = await self._publish_once(now, retry)
        return request

    async def _publish_once(self, request: AccessRequest, retry: Backoff | None) -> AccessRequest:
        if request.message_ts is None:
            request = await self._with_posted_ts(request)
        try:
            if retry is None:
                ts = await self.notifier.publish(request)
            else:
                ts = await call(
                    lambda: self.notifier.publish(request),
                    retry,
                    sleep=asyncio.sleep,
                    # Throttled or unreachable: the edit is still owed. Anything else (a deleted
                    # message) would fail the same way every time.
                    retry_if=lambda exc: isinstance(exc, ChatUnavailable),
                    before_sleep=lambda exc, _: log.warning(
                        "publish.retrying", request_id=request.id, error=self.scrub(str(exc))
                    ),
                )
        except Exception:
            log.exception("publish.failed", request_id=request.id, status=request.status.value)
            return request
        if ts and ts != request.message_ts:
            try:
                request = await self.requests.update(request.id, {"message_ts": ts})
            except Exception:
                log.exception("publish.record_failed", request_id=request.id)
        return request

    async def _with_posted_ts(self, request: AccessRequest) -> AccessRequest:
        """`request` with the ts of its channel message when one was posted after this copy was read.

        A fast-tracked request's message is first posted by its grant's notification, which runs in
        the background; a revocation or take-over read meanwhile carries no ts and would post a
        second message, leaving the first saying "granted" with live buttons."""
        try:
            stored = await self.requests.get(request.id)
        except Exception:
            log.exception("publish.read_failed", request_id=request.id)
            return request
        if stored.message_ts is None:
            return request
        return replace(request, message_ts=stored.message_ts, approval_channel=stored.approval_channel)

    async def tell(self, request: AccessRequest, notice: RequesterNotice, detail: str | None = None) -> None:
        """DM the requester (behind the DMs still owed about the request); a failure is logged, never raised."""
        if self.follow_ups.owed(request.id, Lane.PERSON):
            self.follow_ups.add(request.id, lambda: self.tell(request, notice, detail), lane=Lane.PERSON, what="tell")
            return
        try:
            await self.notifier.notify_requester(request, notice, detail)
        except Exception:
            log.exception("notify.failed", request_id=request.id, notice=notice.value)

    async def alert(
        self, summary: str, request: AccessRequest | None = None, *, error: str | None = None, action: str | None = None
    ) -> bool:
        """Tell the operators; never raises (an alert that fails must not stop a grant or a revocation)."""
        try:
            await self.notifier.alert(Alert(summary, request, self.scrub(error) if error else None, action))
            return True
        except Exception:
            log.exception("alert.failed", request_id=request.id if request else None)
            return False

    async def after(self, flow: Flow | None, hook: str, request: AccessRequest) -> None:
        """Run an after_* hook, when the flow (still) has one (no event is built otherwise)."""
        if flow is not None and self.hooks.has(flow, hook):
            evt = self.hooks.event(request, flow, user=await self.requester(request))
            await self.hooks.observe(flow, hook, evt, request)

    def after_in_background(self, flow: Flow | None, hook: str, request: AccessRequest) -> None:
        """Run an after_* hook as a follow-up in its own lane: a hook may take its whole timeout, and
        the DMs must not wait for it. In order with the request's other hooks."""
        if flow is not None and self.hooks.has(flow, hook):
            self.follow_ups.add(request.id, lambda: self.after(flow, hook, request), lane=Lane.HOOK, what=hook)

    # ── what goes first under a burst ──────────────────────────────────────────────────────────

    def deciding(self) -> Deciding:
        """Mark a decision on its way to its strategy call (`with`, ended early by `done()`): the
        notifications of earlier grants wait for it (`quiet`)."""
        return self.burst.deciding()

    async def quiet(self) -> None:
        """Return once no decision is on its way to its strategy call, or after `burst.wait` seconds (a
        steady stream of clicks delays a notification, never stops it)."""
        await self.burst.quiet()

    # ── one at a time ─────────────────────────────────────────────────────────────────────────

    def lock(self, request_id: str) -> Guard:
        """The per-request lock: one coroutine (of any replica) acts on a request at a time."""
        return self.guards.guard(request_lease(request_id))

    def access_lock(self, request: AccessRequest) -> Guard:
        """One lock per (flow, target, person): a grant and a revocation of the same access never
        interleave, so "is it covered? then revoke" cannot race a new grant of it."""
        return self.guards.guard(f"access:{request.flow}\x1f{request.target}\x1f{request.requester}")

    def busy(self, request_id: str) -> bool:
        """Whether a coroutine of this process is acting on the request right now."""
        return self.guards.locked_here(request_lease(request_id))

    async def busy_elsewhere(self, request_ids: Collection[str]) -> set[str]:
        """Those of `request_ids` another replica is acting on right now (none without replicas)."""
        claims = self.guards.claims
        if claims is None or not request_ids:
            return set()
        held = await claims.busy_elsewhere([request_lease(i) for i in request_ids])
        return {name.removeprefix("request:") for name in held}

    def strategy_type(self, request: AccessRequest) -> str:
        """The `type:` of the strategy acting on the request (the one it recorded, else its flow's), for metrics."""
        recorded = request.grant_spec.get("strategy") if request.grant_spec else None
        if isinstance(recorded, Mapping) and isinstance(recorded.get("type"), str):
            return str(recorded["type"])
        flow = self.flow(request.flow)
        return str(getattr(flow.strategy, "type", "unknown")) if flow is not None else "unknown"

    @asynccontextmanager
    async def strategy_call(self, request: AccessRequest, operation: str) -> AsyncIterator[None]:
        """A strategy call for `request`: through its flow's gate, timed for metrics once it has a slot."""
        async with self.gate(request.flow), timed_call(self.metrics, self.strategy_type(request), operation):
            yield

    def gate(self, flow_name: str) -> asyncio.Semaphore:
        """At most STRATEGY_CONCURRENCY strategy calls per flow at once: 1,000 revocations due in the same
        second must queue, not open 1,000 connections to one target system and time out together."""
        gate = self._gates.get(flow_name)
        if gate is None:
            gate = self._gates[flow_name] = asyncio.Semaphore(STRATEGY_CONCURRENCY)
        return gate
