"""Revocation on time, clean-up of failed grants, request expiry, crash recovery and the sweep.

`ExpiryMixin` is part of `core.engine.AccessEngine` (kept apart for size); it uses the engine's
repositories, strategies, notifier, locks and audit helpers.

Two rules shape it. Access to one target for one person ends when the last live grant covering it
ends, so a grant whose end comes while another live grant covers the same access is closed without
a revoke call. And nothing here may be stopped by a notification: a failed DM, message edit or alert
is logged, never raised, so a broken alerts channel cannot hold up a revocation or the sweep.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

import structlog

from core.errors import InvalidTransition, StrategyUnavailable
from core.models import AccessRequest, RequestStatus as S
from core.ports import RequesterNotice
from core.secrets import scrub

log = structlog.get_logger("jitbot.engine")

SYSTEM = "system"  # the audit actor for what the bot does on its own
REVOKE_BACKOFF_START = 2.0  # seconds: back-off starts within seconds…
REVOKE_BACKOFF_CAP = 300.0  # …and is capped at 5 minutes


def revoke_backoff(attempt: int) -> float:
    """Seconds to wait before revoke attempt `attempt + 1` (attempt counts failures so far)."""
    return min(REVOKE_BACKOFF_CAP, REVOKE_BACKOFF_START * 2 ** max(0, attempt - 1))


class ExpiryMixin:
    """revoke / clean-up / expire / recover / sweep for AccessEngine."""

    # ── revoke ────────────────────────────────────────────────────────────────────────────────

    async def revoke(self, request_id: str) -> AccessRequest | None:
        """Do what is due for a request: revoke a grant at its end, retry a failed grant's clean-up,
        or settle a grant whose record write failed. Anything else is left alone."""
        async with self._lock(request_id):
            request = await self.requests.get(request_id)
            if request.status is S.APPROVED:
                return await self._settle_approved(request)
            if request.status is S.FAILED:
                due = request.next_attempt_at is not None and request.next_attempt_at <= self.clock.now()
                return await self._clean_up(request) if due else None
            if request.status is not S.GRANTED:
                return None
            if request.expires_at > self.clock.now():  # a timer armed for an earlier end; never revoke early
                self.timers.arm_revoke(request_id, request.expires_at)
                return None
            return await self._revoke_granted(request)

    async def _revoke_granted(self, request: AccessRequest) -> AccessRequest:
        strategy = self._strategy_for(request)
        covering = await self._covering(request)
        if covering is None:
            if strategy is None:
                return await self._revoke_failed(request, StrategyUnavailable(
                    f"flow '{request.flow}' is no longer in the config and no recorded strategy was rebuilt for "
                    "this grant: restore the flow, or revoke it by hand"))
            try:
                async with self._gate(request.flow):
                    await strategy.revoke(await self._context(request), request.grant_state)
            except Exception as exc:
                return await self._revoke_failed(request, exc)
        detail = {"attempts": request.revoke_attempts + (0 if covering else 1)}
        if covering is not None:
            detail["access_kept_by"] = covering.id
        request = await self.requests.transition(
            request.id, S.GRANTED, S.REVOKED,
            changes={"ended_at": self.clock.now(), "next_attempt_at": None},
            audit=self._audit(request, SYSTEM, "access.revoked", S.GRANTED, S.REVOKED, detail),
        )
        log.info("access.revoked", request_id=request.id, kept_by=covering.id if covering else None,
                 late_seconds=round((self.clock.now() - request.expires_at).total_seconds(), 3))
        request = await self._publish(request)
        if covering is not None:
            await self._tell(request, RequesterNotice.SUPERSEDED, detail=(
                f"Your access continues under request {covering.id}, "
                f"until {covering.expires_at:%Y-%m-%d %H:%M} UTC."))
            return request
        await self._tell(request, RequesterNotice.REVOKED)
        flow = self._flow(request.flow)
        if flow is not None:
            await self._after(flow, "after_revoke", request)
        return request

    async def _clean_up(self, request: AccessRequest) -> AccessRequest | None:
        """Take back whatever a failed grant may have left; retried like any revocation until it succeeds."""
        covering = await self._covering(request)
        if covering is not None:
            # Another live grant holds the same access: revoking now would cut it short. The failed
            # attempt may still land late, so the clean-up is put off until that grant ends, not dropped.
            request = await self.requests.update(
                request.id, {"next_attempt_at": covering.expires_at}, expected_status=S.FAILED,
                audit=self._audit(request, SYSTEM, "grant.cleanup_deferred", detail={
                    "access_kept_by": covering.id, "until": covering.expires_at.isoformat()}))
            self.timers.arm_revoke(request.id, covering.expires_at)
            return request
        strategy = self._strategy_for(request)
        try:
            if strategy is None:
                raise StrategyUnavailable(f"flow '{request.flow}' is no longer in the config")
            async with self._gate(request.flow):
                await strategy.revoke(await self._context(request), request.grant_state)
        except Exception as exc:
            return await self._revoke_failed(request, exc, expected=S.FAILED)
        request = await self.requests.update(
            request.id, {"next_attempt_at": None, "last_error": None}, expected_status=S.FAILED,
            audit=self._audit(request, SYSTEM, "grant.cleaned_up", detail={"attempts": request.revoke_attempts + 1}))
        log.info("grant.cleaned_up", request_id=request.id)
        return request

    async def _covering(self, request: AccessRequest) -> AccessRequest | None:
        """Another live grant of the same target to the same person that outlasts now, if any."""
        now = self.clock.now()
        for other in await self.requests.list_live_for(request.flow, request.target, request.requester):
            if other.id != request.id and other.expires_at is not None and other.expires_at > now:
                return other
        return None

    async def _revoke_failed(self, request: AccessRequest, error: BaseException, *,
                             expected: S = S.GRANTED) -> AccessRequest:
        attempts = request.revoke_attempts + 1
        delay = revoke_backoff(attempts)
        next_at = self.clock.now() + timedelta(seconds=delay)
        message = scrub(str(error)) or type(error).__name__
        what = "Revocation" if expected is S.GRANTED else "Clean-up after the failed grant"
        request = await self.requests.update(
            request.id,
            {"revoke_attempts": attempts, "next_attempt_at": next_at, "last_error": message},
            expected_status=expected,
            audit=self._audit(request, SYSTEM, "revoke.failed", detail={
                "attempt": attempts, "error": message, "retry_in_seconds": delay, "cleanup": expected is S.FAILED}),
        )
        log.error("revoke.failed", request_id=request.id, attempt=attempts, retry_in=delay, error=message)
        self.timers.arm_revoke(request.id, next_at)
        await self._alert(
            f"{what} of request {request.id} ({request.flow}/{request.target}, requested by {request.requester}) "
            f"failed (attempt {attempts}): {message}. Retrying in {int(delay)}s.", request)
        return request

    # ── expiry ────────────────────────────────────────────────────────────────────────────────

    async def expire(self, request_id: str) -> AccessRequest | None:
        """Expire a pending request that was not decided within its flow's request_timeout."""
        async with self._lock(request_id):
            request = await self.requests.get(request_id)
            if request.status is not S.PENDING or not self._timed_out(request):
                return None
            return await self._expire_locked(request)

    async def _expire_locked(self, request: AccessRequest, reason: str | None = None) -> AccessRequest | None:
        try:
            request = await self.requests.transition(
                request.id, S.PENDING, S.EXPIRED,
                changes={"ended_at": self.clock.now(), **({"decision_reason": reason} if reason else {})},
                audit=self._audit(request, SYSTEM, "request.expired", S.PENDING, S.EXPIRED,
                                  {"reason": reason} if reason else None),
            )
        except InvalidTransition:
            return None
        self.timers.disarm(request.id)
        request = await self._publish(request)
        await self._tell(request, RequesterNotice.EXPIRED)
        return request

    # ── time: recovery and the sweep ──────────────────────────────────────────────────────────

    async def recover(self) -> dict[str, int]:
        """At start: end requests of removed flows, settle half-done grants, then sweep."""
        counts = {"regranted": 0, "in_doubt_revoked": 0, "flow_removed_expired": 0}
        for request in await self.requests.list_by_status(S.PENDING):
            if self._flow(request.flow) is None:  # nobody can decide it any more
                async with self._lock(request.id):
                    if await self._guarded(self._expire_locked, request,
                                           f"flow '{request.flow}' was removed from the configuration"):
                        counts["flow_removed_expired"] += 1
        for request in await self.requests.list_by_status(S.APPROVED):
            in_doubt = request.expires_at is not None and request.expires_at <= self.clock.now()
            async with self._lock(request.id):
                if await self._guarded(self._settle_approved, request) is not None:
                    counts["in_doubt_revoked" if in_doubt else "regranted"] += 1
        counts.update(await self.sweep())
        log.info("recovery.done", **counts)
        return counts

    async def _settle_approved(self, request: AccessRequest) -> AccessRequest | None:
        """A row left `approved` (a crash or a failed write mid-grant): finish it as recovery would."""
        if request.expires_at is not None and request.expires_at <= self.clock.now():
            # The window ended; the grant may or may not have happened. Treat it as held so the
            # normal revoke path (with its retries and alerts) takes it back. Never granted late.
            request = await self.requests.transition(
                request.id, S.APPROVED, S.GRANTED, changes={"granted_at": None, "grant_state": {}},
                audit=self._audit(request, SYSTEM, "grant.in_doubt", S.APPROVED, S.GRANTED,
                                  {"note": "the grant's window ended before it was recorded; revoking"}),
            )
            return await self._revoke_granted(request)
        if self._strategy_for(request) is None:
            return None  # nothing can act on it: revoked at its end through the branch above, or alerted
        return await self._grant(request, self._flow(request.flow))

    async def sweep(self, *, concurrency: int = 20) -> dict[str, int]:
        """Do everything that is due; the safety net under the timers, and what finishes a failed write."""
        now = self.clock.now()
        due = await self.requests.list_due_revocations(now)
        stale = await self.requests.list_pending_timed_out(now)
        # Rows left `approved` by a failed write: not while this process is still granting them.
        stuck = [r for r in await self.requests.list_by_status(S.APPROVED) if not self._busy(r.id)]
        unposted = [r for r in await self.requests.list_unposted()
                    if r.id not in self._submitting and not self._busy(r.id)]
        gate = asyncio.Semaphore(concurrency)

        async def guarded(fn, request_id):
            async with gate:
                try:
                    await fn(request_id)
                except Exception:
                    log.exception("sweep.item_failed", request_id=request_id)

        await asyncio.gather(*(guarded(self.revoke, r.id) for r in [*due, *stuck]),
                             *(guarded(self.expire, r.id) for r in stale),
                             *(guarded(self._repost, r.id) for r in unposted))
        return {"revoked_due": len(due), "expired": len(stale), "settled": len(stuck), "reposted": len(unposted)}

    async def _repost(self, request_id: str) -> None:
        """Try again to post a pending request that never reached its approval channel."""
        async with self._lock(request_id):
            request = await self.requests.get(request_id)
            if request.status is not S.PENDING or request.message_ts:
                return
            try:
                ts = await self.notifier.publish(request)
            except Exception as exc:
                log.warning("publish.still_failing", request_id=request_id, error=scrub(str(exc)))
                return
            request = await self.requests.update(request_id, {"message_ts": ts})
        await self._tell(request, RequesterNotice.SUBMITTED)

    async def _guarded(self, fn, *args):
        """Run one recovery step; a failure is logged and the next step still runs."""
        try:
            return await fn(*args)
        except Exception:
            log.exception("recovery.item_failed", step=fn.__name__)
            return None

    def _busy(self, request_id: str) -> bool:
        lock = self._locks.get(request_id)
        return lock is not None and lock.locked()
