"""Revocation on time, retries, request expiry, crash recovery and the sweep: the engine's clock side.

`ExpiryMixin` is part of `core.engine.AccessEngine` (kept apart for size); it uses the engine's
repositories, strategies, notifier, locks and audit helpers.
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
REVOKE_BACKOFF_START = 2.0  # seconds; SPEC §5: back-off starts within seconds…
REVOKE_BACKOFF_CAP = 300.0  # …and is capped at 5 minutes


def revoke_backoff(attempt: int) -> float:
    """Seconds to wait before revoke attempt `attempt + 1` (attempt counts failures so far)."""
    return min(REVOKE_BACKOFF_CAP, REVOKE_BACKOFF_START * 2 ** max(0, attempt - 1))


class ExpiryMixin:
    """revoke / expire / recover / sweep for AccessEngine."""

    # ── revoke and expiry ─────────────────────────────────────────────────────────────────────

    async def revoke(self, request_id: str) -> AccessRequest | None:
        """Revoke a granted request that has reached its end; on failure schedule a retry and alert."""
        async with self._lock(request_id):
            request = await self.requests.get(request_id)
            if request.status is not S.GRANTED:
                return None
            now = self.clock.now()
            if request.expires_at > now:  # a timer armed for an earlier end; never revoke early
                self.timers.arm_revoke(request_id, request.expires_at)
                return None
            if request.flow not in self.strategies:
                return await self._revoke_failed(request, StrategyUnavailable(
                    f"flow '{request.flow}' is no longer in the config: restore it so this grant can be "
                    "revoked, or revoke it by hand"))
            flow = self.config.flow(request.flow)
            strategy = self.strategies[flow.name]
            try:
                async with self._gate(flow.name):
                    await strategy.revoke(await self._context(request), request.grant_state)
            except Exception as exc:
                return await self._revoke_failed(request, exc)
            request = await self.requests.transition(
                request_id, S.GRANTED, S.REVOKED,
                changes={"ended_at": self.clock.now(), "next_attempt_at": None},
                audit=self._audit(request, SYSTEM, "access.revoked", S.GRANTED, S.REVOKED,
                                  {"attempts": request.revoke_attempts + 1}),
            )
            log.info("access.revoked", request_id=request_id,
                     late_seconds=round((self.clock.now() - request.expires_at).total_seconds(), 3))
        request = await self._publish(request)
        await self._tell(request, RequesterNotice.REVOKED)
        await self._after(flow, "after_revoke", request)
        return request

    async def _revoke_failed(self, request: AccessRequest, error: BaseException) -> AccessRequest:
        attempts = request.revoke_attempts + 1
        delay = revoke_backoff(attempts)
        next_at = self.clock.now() + timedelta(seconds=delay)
        message = scrub(str(error)) or type(error).__name__
        request = await self.requests.update(
            request.id,
            {"revoke_attempts": attempts, "next_attempt_at": next_at, "last_error": message},
            expected_status=S.GRANTED,
            audit=self._audit(request, SYSTEM, "revoke.failed", detail={
                "attempt": attempts, "error": message, "retry_in_seconds": delay}),
        )
        log.error("revoke.failed", request_id=request.id, attempt=attempts, retry_in=delay, error=message)
        self.timers.arm_revoke(request.id, next_at)
        await self.notifier.alert(
            f"Revocation of request {request.id} ({request.flow}/{request.target} for <@{request.requester}>) "
            f"failed (attempt {attempts}): {message}. Retrying in {int(delay)}s.", request)
        return request

    async def expire(self, request_id: str) -> AccessRequest | None:
        """Expire a pending request that was not decided within its flow's request_timeout."""
        async with self._lock(request_id):
            request = await self.requests.get(request_id)
            if request.status is not S.PENDING or request.timeout_at is None or request.timeout_at > self.clock.now():
                return None
            try:
                request = await self.requests.transition(
                    request_id, S.PENDING, S.EXPIRED, changes={"ended_at": self.clock.now()},
                    audit=self._audit(request, SYSTEM, "request.expired", S.PENDING, S.EXPIRED),
                )
            except InvalidTransition:
                return None
        request = await self._publish(request)
        await self._tell(request, RequesterNotice.EXPIRED)
        return request

    # ── time: recovery and the sweep ──────────────────────────────────────────────────────────

    async def recover(self) -> dict[str, int]:
        """At start: finish grants left half-way, revoke what is past its end, expire stale requests."""
        counts = {"regranted": 0, "in_doubt_revoked": 0}
        now = self.clock.now()
        for request in await self.requests.list_by_status(S.PENDING):
            if request.flow not in self.strategies:  # nobody can decide it any more
                await self.requests.transition(
                    request.id, S.PENDING, S.EXPIRED, changes={"ended_at": now, "decision_reason": "flow removed"},
                    audit=self._audit(request, SYSTEM, "request.expired", S.PENDING, S.EXPIRED,
                                      {"reason": f"flow '{request.flow}' is no longer in the config"}))
        for request in await self.requests.list_by_status(S.APPROVED):
            orphaned = request.flow not in self.strategies
            if orphaned or (request.expires_at is not None and request.expires_at <= now):
                # The window ended while we were down; the grant may or may not have happened.
                # Treat it as held so the normal revoke path (with retries and alerts) cleans up.
                await self.requests.transition(
                    request.id, S.APPROVED, S.GRANTED, changes={"granted_at": None, "grant_state": {}},
                    audit=self._audit(request, SYSTEM, "grant.in_doubt", S.APPROVED, S.GRANTED,
                                      {"note": "window ended while the bot was down; revoking"}),
                )
                counts["in_doubt_revoked"] += 1
            else:
                async with self._lock(request.id):
                    await self._grant(request)
                counts["regranted"] += 1
        await self._report_orphans()
        counts.update(await self.sweep())
        log.info("recovery.done", **counts)
        return counts

    async def _report_orphans(self) -> None:
        # A flow removed from the config while it has live requests: its grants cannot be revoked
        # by this bot until it is restored, so say so loudly rather than let access linger.
        for flow, count in (await self.requests.live_counts_by_flow()).items():
            if flow not in self.strategies:
                log.error("flow.orphaned", flow=flow, live_requests=count)
                await self.notifier.alert(
                    f"{count} live request(s) belong to flow '{flow}', which is no longer in the config. "
                    "Their access cannot be revoked until the flow is restored; revocation is retried and "
                    "alerted until then.")

    async def sweep(self, *, concurrency: int = 20) -> dict[str, int]:
        """Revoke every grant that is due, expire timed-out requests; the safety net under the timers."""
        now = self.clock.now()
        due = await self.requests.list_due_revocations(now)
        stale = await self.requests.list_pending_timed_out(now)
        gate = asyncio.Semaphore(concurrency)

        async def guarded(fn, request_id):
            async with gate:
                try:
                    await fn(request_id)
                except Exception:
                    log.exception("sweep.item_failed", request_id=request_id)

        await asyncio.gather(*(guarded(self.revoke, r.id) for r in due), *(guarded(self.expire, r.id) for r in stale))
        return {"revoked_due": len(due), "expired": len(stale)}

