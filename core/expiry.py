"""Revocation on time, clean-up of failed grants, request expiry, and finishing a row left `approved`.

`Expiry` is the engine's clock side (what settles everything due, at start and every minute, is
`core.recovery.Recovery`, which calls these steps). It shares the engine's `core.lifecycle.Lifecycle` and takes
the engine's grant step as a constructor argument (a row left `approved` is finished by granting it).

Two rules shape it. Access to one target for one person ends when the last live grant of exactly
that access ends: a grant whose end comes while another live grant of the same access runs (same
recorded strategy, target and identity, on a strategy that `SharesAccess`) is closed without a
revoke call. And nothing here may be stopped by a notification: a failed DM, message edit or alert is
logged, never raised, so a broken alerts channel cannot hold up a revocation or the sweep.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from datetime import timedelta

import structlog

from core.config_models import Flow
from core.decisions import duration_allowed
from core.errors import InvalidTransition, StrategyUnavailable
from core.lifecycle import SYSTEM, Lifecycle, same_access
from core.models import AccessRequest
from core.models import RequestStatus as S
from core.ports import RequesterNotice
from core.retry import REVOCATION
from core.strategy import SharesAccess
from core.targets import flow_target

log = structlog.get_logger("jitbot.engine")

DEFER_RECHECK = timedelta(minutes=1)  # a deferred clean-up looks again at least this often
Grant = Callable[[AccessRequest, Flow | None], Awaitable[AccessRequest]]


def revoke_backoff(attempt: int) -> float:
    """Seconds to wait before revoke attempt `attempt + 1` (attempt counts failures so far): the one
    revocation policy of core.retry, 2 s doubling, capped at 5 minutes, whatever the count."""
    return REVOCATION.delay(attempt)


revoke_delay = revoke_backoff


class Expiry:
    """revoke / clean-up / expire; see the module docstring."""

    def __init__(self, life: Lifecycle, *, grant: Grant) -> None:
        self.life = life
        self._grant = grant

    # ── revoke ────────────────────────────────────────────────────────────────────────────────

    async def revoke(self, request_id: str) -> AccessRequest | None:
        """Do what is due for a request: revoke a grant at its end, retry a failed grant's clean-up,
        or settle a grant whose record write failed. Anything else is left alone."""
        life = self.life
        async with life.lock(request_id):
            request = await life.requests.get(request_id)
            if request.status is S.APPROVED:
                return await self._settle_approved(request)
            if request.status is S.FAILED:
                due = request.next_attempt_at is not None and request.next_attempt_at <= life.clock.now()
                return await self.clean_up(request) if due else None
            if request.status is not S.GRANTED or request.expires_at is None:
                return None
            # Due at its end, or, after a failed revocation, when its back-off is over (as the scheduler
            # arms it): a timer armed for an earlier end, or a sweep that listed the row before a failure
            # and waited for this lock, must neither revoke early nor call the target again at once.
            due_at = max(request.expires_at, request.next_attempt_at or request.expires_at)
            if due_at > life.clock.now():
                life.timers.arm_revoke(request_id, due_at)
                return None
            return await self.revoke_granted(request)

    async def revoke_granted(self, request: AccessRequest) -> AccessRequest:
        """Revoke a granted request that is due (its lock held): the strategy's revoke unless another
        live grant covers the same access, retried with back-off on failure."""
        life = self.life
        strategy = life.strategy_for(request)
        async with life.access_lock(request):
            covering = await self._covering(request)
            if covering is None:
                if strategy is None:
                    return await self._revoke_failed(
                        request,
                        StrategyUnavailable(
                            f"flow '{request.flow}' is no longer in the config and no recorded strategy was rebuilt "
                            "for this grant: restore the flow, or revoke it by hand"
                        ),
                    )
                try:
                    context = await life.context(request)
                    async with life.strategy_call(request, "revoke"):
                        await strategy.revoke(context, request.grant_state)
                except Exception as exc:
                    return await self._revoke_failed(request, exc)
            detail: dict[str, object] = {"attempts": request.revoke_attempts + (0 if covering else 1)}
            if request.revoked_by is not None:
                detail["revoked_by"], detail["reason"] = request.revoked_by, request.end_reason
            if covering is not None:
                detail["access_kept_by"] = covering.id
            request = await life.requests.transition(
                request.id,
                S.GRANTED,
                S.REVOKED,
                changes={"ended_at": life.clock.now(), "next_attempt_at": None},
                audit=life.event(request, SYSTEM, "access.revoked", S.GRANTED, S.REVOKED, detail),
            )
        assert request.expires_at is not None
        late = max(0.0, (life.clock.now() - request.expires_at).total_seconds())
        life.metrics.revocation_lateness(late)
        log.info(
            "access.revoked",
            request_id=request.id,
            kept_by=covering.id if covering else None,
            late_seconds=round(late, 3),
        )
        # Done: the access is gone and recorded. Telling people follows in the background, so a
        # throttled message edit never holds up the revocations queued behind this one.
        revoked = request
        life.announce(revoked, lambda: self._tell_revoked(revoked, covering), what="revoked")
        return request

    async def _tell_revoked(self, request: AccessRequest, covering: AccessRequest | None) -> None:
        """DM the requester about a recorded revocation; after_revoke follows in its own lane (not when
        access goes on under `covering`)."""
        life = self.life
        if covering is not None and covering.expires_at is not None:
            await life.tell(
                request,
                RequesterNotice.SUPERSEDED,
                detail=(
                    f"Your access continues under request {covering.id}, "
                    f"until {covering.expires_at:%Y-%m-%d %H:%M} UTC."
                ),
            )
            return
        await life.tell(request, RequesterNotice.ENDED_EARLY if request.revoked_by else RequesterNotice.REVOKED)
        life.after_in_background(life.flow(request.flow), "after_revoke", request)

    async def clean_up(self, request: AccessRequest) -> AccessRequest | None:
        """Take back whatever a failed grant may have left (its lock held); retried like any revocation."""
        life = self.life
        async with life.access_lock(request):
            covering = await self._covering(request)
            if covering is not None and covering.expires_at is not None:
                return await self._defer_clean_up(request, covering)
            strategy = life.strategy_for(request)
            try:
                if strategy is None:
                    raise StrategyUnavailable(f"flow '{request.flow}' is no longer in the config")
                context = await life.context(request)
                async with life.strategy_call(request, "revoke"):
                    await strategy.revoke(context, request.grant_state)
            except Exception as exc:
                return await self._revoke_failed(request, exc, expected=S.FAILED)
            request = await life.requests.update(
                request.id,
                {"next_attempt_at": None, "last_error": None},
                expected_status=S.FAILED,
                audit=life.event(request, SYSTEM, "grant.cleaned_up", detail={"attempts": request.revoke_attempts + 1}),
            )
        log.info("grant.cleaned_up", request_id=request.id)
        return request

    async def _defer_clean_up(self, request: AccessRequest, covering: AccessRequest) -> AccessRequest:
        # Another live grant holds exactly this access: revoking now would cut it short. The failed
        # attempt may still land late, so the clean-up is put off, not dropped, and looks again at
        # least every minute (the covering grant may itself fail or end early).
        life = self.life
        assert covering.expires_at is not None
        when = min(covering.expires_at, life.clock.now() + DEFER_RECHECK)
        note = f"clean-up deferred while request {covering.id} holds the same access"
        audit = (
            None
            if request.last_error == note
            else life.event(
                request,
                SYSTEM,
                "grant.cleanup_deferred",
                detail={"access_kept_by": covering.id, "until": covering.expires_at.isoformat()},
            )
        )
        request = await life.requests.update(
            request.id, {"next_attempt_at": when, "last_error": note}, expected_status=S.FAILED, audit=audit
        )
        life.timers.arm_revoke(request.id, when)
        return request

    async def take_back_unrecorded(self, request: AccessRequest, state: Mapping[str, str]) -> None:
        """A grant landed for a row someone else settled meanwhile: make sure it leaves nothing behind."""
        life = self.life
        current = await life.requests.get(request.id)
        if current.status is S.GRANTED:
            return  # recorded after all: revoked at its end like any grant
        if current.status is S.FAILED:
            current = await life.requests.update(
                request.id, {"next_attempt_at": life.clock.now(), "grant_state": dict(state)}, expected_status=S.FAILED
            )
            await self.clean_up(current)
            return
        strategy = life.strategy_for(request)
        try:
            async with life.access_lock(request):
                if strategy is not None and await self._covering(current) is None:
                    context = await life.context(current)
                    async with life.strategy_call(current, "revoke"):
                        await strategy.revoke(context, state)
        except Exception as exc:
            await life.alert(
                "A grant landed for a request that was already settled, and taking it back failed",
                request,
                error=str(exc),
                action="Check the target system by hand.",
            )

    async def _covering(self, request: AccessRequest) -> AccessRequest | None:
        """Another live grant of exactly the same access that outlasts now, if the strategy shares access."""
        if not request.grant_spec or not isinstance(self.life.strategy_for(request), SharesAccess):
            return None
        now = self.life.clock.now()
        for other in await self.life.requests.list_live_for(request.flow, request.target, request.requester):
            if (
                other.id != request.id
                and same_access(other.grant_spec, request.grant_spec)
                and other.expires_at is not None
                and other.expires_at > now
            ):
                return other
        return None

    async def _revoke_failed(
        self, request: AccessRequest, error: BaseException, *, expected: S = S.GRANTED
    ) -> AccessRequest:
        life = self.life
        attempts = request.revoke_attempts + 1
        delay = revoke_delay(attempts)
        next_at = life.clock.now() + timedelta(seconds=delay)
        message = self.life.scrub(str(error)) or type(error).__name__
        request = await life.requests.update(
            request.id,
            {"revoke_attempts": attempts, "next_attempt_at": next_at, "last_error": message},
            expected_status=expected,
            audit=life.event(
                request,
                SYSTEM,
                "revoke.failed",
                detail={
                    "attempt": attempts,
                    "error": message,
                    "retry_in_seconds": delay,
                    "cleanup": expected is S.FAILED,
                },
            ),
        )
        log.error("revoke.failed", request_id=request.id, attempt=attempts, retry_in=delay, error=message)
        life.timers.arm_revoke(request.id, next_at)
        what = "Revocation failed" if expected is S.GRANTED else "Clean-up after a failed grant failed"
        await life.alert(f"{what} (attempt {attempts})", request, error=message, action=f"Retrying in {int(delay)}s.")
        return request

    # ── expiry ────────────────────────────────────────────────────────────────────────────────

    async def expire(self, request_id: str) -> AccessRequest | None:
        """Expire a pending request that was not decided within its flow's request_timeout."""
        async with self.life.lock(request_id):
            request = await self.life.requests.get(request_id)
            if request.status is not S.PENDING or not self.life.timed_out(request):
                return None
            return await self.expire_locked(request)

    async def expire_locked(self, request: AccessRequest, reason: str | None = None) -> AccessRequest | None:
        """Expire a pending request whose lock is held; update its message and tell the requester."""
        life = self.life
        try:
            request = await life.requests.transition(
                request.id,
                S.PENDING,
                S.EXPIRED,
                changes={"ended_at": life.clock.now(), **({"decision_reason": reason} if reason else {})},
                audit=life.event(
                    request, SYSTEM, "request.expired", S.PENDING, S.EXPIRED, {"reason": reason} if reason else None
                ),
            )
        except InvalidTransition:
            return None
        life.timers.disarm(request.id)
        request = await life.publish(request)
        await life.tell(request, RequesterNotice.EXPIRED)
        return request

    # ── rows left approved, failed grants ─────────────────────────────────────────────────────

    async def _settle_approved(self, request: AccessRequest) -> AccessRequest | None:
        """A row left `approved` (a crash or a failed write mid-grant): finish it as recovery would."""
        life = self.life
        if request.expires_at is not None and request.expires_at <= life.clock.now():
            # The window ended; the grant may or may not have happened. Treat it as held so the
            # normal revoke path (with its retries and alerts) takes it back. Never granted late.
            request = await life.requests.transition(
                request.id,
                S.APPROVED,
                S.GRANTED,
                changes={"granted_at": None, "grant_state": {}},
                audit=life.event(
                    request,
                    SYSTEM,
                    "grant.in_doubt",
                    S.APPROVED,
                    S.GRANTED,
                    {"note": "the grant's window ended before it was recorded; revoking"},
                ),
            )
            return await self.revoke_granted(request)
        flow = life.flow(request.flow)
        if (
            flow is None
            or request.id in life.retired
            or flow_target(flow, request.target) is None
            or not duration_allowed(flow, request.duration_seconds)
        ):
            # What was approved is no longer what the config allows: never granted now. The grant
            # may have half-happened before the stop, so it is cleaned up like any failed grant.
            reason = "the flow changed before the grant was made"
            return await self.fail_grant(request, reason, state={}, detail={"error": reason}) or request
        return await self._grant(request, flow)

    async def fail_grant(
        self, request: AccessRequest, reason: str, *, state: Mapping[str, str], detail: Mapping[str, object]
    ) -> AccessRequest | None:
        """Record approved → failed as due for clean-up (its lock held), take back what may be there, and
        tell the requester; None when the failure itself could not be recorded (the sweep settles the row).

        The row keeps what the clean-up needs and stays due (next_attempt_at) until a revoke has
        succeeded, so a failed grant never leaves access behind.
        """
        life = self.life
        try:
            request = await life.requests.transition(
                request.id,
                S.APPROVED,
                S.FAILED,
                changes={
                    "failure_reason": reason,
                    "grant_state": dict(state),
                    "next_attempt_at": life.clock.now(),
                    "revoke_attempts": 0,
                },
                audit=life.event(request, SYSTEM, "grant.failed", S.APPROVED, S.FAILED, detail),
            )
        except InvalidTransition:
            raise
        except Exception as exc:  # still `approved`: the sweep settles it
            log.error("grant.failure_record_failed", request_id=request.id, error=life.scrub(str(exc)))
            return None
        log.error("grant.failed", request_id=request.id, error=reason)
        request = await self.clean_up(request) or request
        request = await life.publish(request)
        await life.tell(request, RequesterNotice.FAILED)
        return request
