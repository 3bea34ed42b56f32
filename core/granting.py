"""Granting: call the strategy for an approved request and record what happened, whatever happens.

The approval and its end time are already saved when this runs (the request's lock is held). A
grant attempt is retried only when the strategy says the attempt has ended; a grant that happened is
recorded, with its write retried, and when the write keeps failing the revoke timer is armed anyway
and the sweep settles the row; a failed grant is recorded as due for clean-up (`Expiry.fail_grant`).
A grant and a revocation of the same access never interleave (`Lifecycle.access_lock`). Telling
people about a recorded grant (message edit, DM, after_grant) is a background follow-up.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Mapping
from datetime import datetime

import structlog

from core.config_models import Flow
from core.errors import InvalidTransition, StrategyError
from core.expiry import Expiry
from core.lifecycle import SYSTEM, Lifecycle
from core.models import AccessRequest
from core.models import RequestStatus as S
from core.ports import RequesterNotice
from core.retry import Backoff, call
from core.strategy import GrantContext, GrantResult, Strategy, SupportsInstructions

log = structlog.get_logger("jitbot.engine")

GRANT_ATTEMPTS = 3
RECORD_ATTEMPTS = 4  # writes of a grant that already happened at the target: retried, never dropped
ANNOUNCE_SLOW_GRANT_AFTER = 1.0  # seconds before the message says "granting…"


def retry_policy(first: float, attempts: int) -> Backoff:
    """The engine's in-call back-off: `first`, doubling, for `attempts` tries (tests set first to 0)."""
    return Backoff(first=first, factor=2.0, cap=8.0, attempts=attempts)


class Granting:
    """Grants approved requests and records the outcome; see the module docstring."""

    def __init__(self, life: Lifecycle, expiry: Expiry, *, grant_retry_delay: float, retry_delay: float) -> None:
        self.life = life
        self.expiry = expiry
        self.grant_retry_delay = grant_retry_delay
        self.retry_delay = retry_delay

    async def grant(self, request: AccessRequest, flow: Flow | None) -> AccessRequest:
        """Call the strategy for an approved request (its lock held) and record the outcome."""
        life = self.life
        strategy = life.strategy_for(request)
        if strategy is None:  # nothing can grant it: a failed grant, cleaned up like any other
            return await self._grant_failed(request, StrategyError(f"flow '{request.flow}' has no strategy"))
        granted_at = life.clock.now()
        ctx = await life.context(request, granted_at=granted_at)
        recorded: AccessRequest | None = None
        state: dict[str, str] = {}
        # A grant and a revocation of the same access never interleave (see Lifecycle.access_lock).
        async with life.access_lock(request):
            attempt = asyncio.ensure_future(self._attempt_grant(strategy, ctx, request))
            try:
                # The approver sees "granting…" only when the grant is slow: an edit before every
                # grant would put a Slack round trip between the click and the strategy call.
                done, _ = await asyncio.wait({attempt}, timeout=ANNOUNCE_SLOW_GRANT_AFTER)
                if not done:
                    request = await life.publish(request)
            finally:
                result, error = await attempt  # never leave an attempt running with nobody to record it
            if error is None and result is not None:
                state = {str(k): str(v) for k, v in (result.state or {}).items()}
                try:
                    recorded = await self._record_grant(request, granted_at, state, strategy)
                except InvalidTransition as lost:
                    log.error("grant.record_lost", request_id=request.id, now=lost.current)
                    error = lost
        if isinstance(error, InvalidTransition):
            # Someone else settled this row meanwhile: the access just granted is recorded nowhere.
            await self.expiry.take_back_unrecorded(request, state)
            return await life.requests.get(request.id)
        if error is not None or result is None:
            return await self._grant_failed(request, error or StrategyError("the strategy returned nothing"))
        if recorded is None:
            return await life.requests.get(request.id)
        request = recorded
        assert request.expires_at is not None  # written with the approval
        log.info("access.granted", request_id=request.id, expires_at=request.expires_at.isoformat())
        life.timers.arm_revoke(request.id, request.expires_at)
        if request.warn_at is not None:
            life.timers.arm_warn(request.id, request.warn_at)
        # Granted and recorded: telling people follows in the background (in order per request, like a
        # revocation's), once no other click is on its way to its strategy call (`Lifecycle.quiet`).
        # The channel edit (a first post when a hook fast-tracked it) and the DM, then after_grant.
        granted = request
        life.announce(
            granted, lambda: self._tell_granted(granted, flow, result, strategy, ctx), what="granted", after=life.quiet
        )
        return request

    async def _tell_granted(
        self, request: AccessRequest, flow: Flow | None, result: GrantResult, strategy: Strategy, ctx: GrantContext
    ) -> None:
        """DM the requester that access is granted (with how to use it); after_grant follows in its own lane."""
        life = self.life
        instructions = result.instructions
        if instructions is None and isinstance(strategy, SupportsInstructions):
            instructions = strategy.instructions(ctx)
        await life.tell(request, RequesterNotice.GRANTED, detail=instructions)
        life.after_in_background(flow, "after_grant", request)

    async def _record_grant(
        self, request: AccessRequest, granted_at: datetime, state: Mapping[str, str], strategy: Strategy
    ) -> AccessRequest | None:
        """Write approved → granted. The target already changed, so a failed write is retried; when it
        keeps failing the revoke timer is armed anyway and the sweep finishes the job."""
        life = self.life
        expires_at = request.expires_at
        assert expires_at is not None

        def record() -> Awaitable[AccessRequest]:
            return life.requests.transition(
                request.id,
                S.APPROVED,
                S.GRANTED,
                changes={"granted_at": granted_at, "grant_state": state},
                audit=life.event(
                    request,
                    SYSTEM,
                    "access.granted",
                    S.APPROVED,
                    S.GRANTED,
                    {"expires_at": expires_at.isoformat(), "system": strategy.system},
                ),
            )

        try:
            return await call(
                record,
                retry_policy(self.retry_delay, RECORD_ATTEMPTS),
                sleep=asyncio.sleep,
                retry_if=lambda exc: not isinstance(exc, InvalidTransition),
                before_sleep=lambda exc, _: log.error(
                    "grant.record_failed", request_id=request.id, error=self.life.scrub(str(exc))
                ),
            )
        except InvalidTransition:
            raise
        except Exception as exc:
            log.error("grant.record_failed", request_id=request.id, error=self.life.scrub(str(exc)), final=True)
        # Still `approved` in the database: the revoke timer and the sweep both pick such a row up.
        life.timers.arm_revoke(request.id, expires_at)
        await life.alert(
            "A grant was made but the database refused to record it",
            request,
            action="jitbot retries on its next sweep and revokes it on time.",
        )
        return None

    async def _attempt_grant(
        self, strategy: Strategy, ctx: GrantContext, request: AccessRequest
    ) -> tuple[GrantResult | None, BaseException | None]:
        """Call the strategy's grant, retrying only failures after which the attempt has ended."""

        async def once() -> GrantResult:
            async with self.life.strategy_call(request, "grant"):
                return await strategy.grant(ctx)

        try:
            return await call(
                once,
                retry_policy(self.grant_retry_delay, GRANT_ATTEMPTS),
                sleep=asyncio.sleep,
                retry_if=lambda exc: isinstance(exc, StrategyError) and exc.retryable,
                before_sleep=lambda exc, _: log.warning(
                    "grant.retrying", request_id=ctx.request_id, error=self.life.scrub(str(exc))
                ),
            ), None
        except StrategyError as exc:
            return None, exc
        except Exception as exc:  # an adapter bug must still end as a visible failed grant
            log.exception("grant.crashed", request_id=ctx.request_id)
            return None, exc

    async def _grant_failed(self, request: AccessRequest, error: BaseException) -> AccessRequest:
        """Record a failed grant as due for clean-up, take back what may be there, and tell everyone."""
        life = self.life
        reason = life.scrub(getattr(error, "user_message", None) or str(error)) or type(error).__name__
        # A grant can fail after part of it took effect (a timeout after the write, an assignment
        # still in progress): the state the clean-up needs comes with the error.
        state = {str(k): str(v) for k, v in (getattr(error, "grant_state", None) or {}).items()}
        failed = await self.expiry.fail_grant(
            request, reason, state=state, detail={"error": life.scrub(str(error)), "type": type(error).__name__}
        )
        if failed is not None:
            await life.alert("Grant failed", failed, error=reason)
        return failed or request
