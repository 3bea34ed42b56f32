"""The warning before access ends: a DM with the end time and an Extend button, `warn_before` ahead.

When it is due is stored on the row (`warn_at`), written with the end time it belongs to, so it
survives a restart like every timer: the scheduler arms it when it comes within its horizon and the
sweep sends any that are overdue. It is sent at most once (cleared under the request's lock before
the DM goes out), never after the end, and not at all for a grant shorter than twice the warning,
where it would arrive in the first half of the access.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta

import structlog

from core.config_models import Flow
from core.follow_ups import Lane
from core.lifecycle import SYSTEM, Lifecycle
from core.models import AccessRequest, AuditEvent
from core.models import RequestStatus as S
from core.ports import RequesterNotice

log = structlog.get_logger("jitbot.engine")


# A warning waiting behind DMs is due again this much later in the row: the sweeps (every replica's)
# leave it alone meanwhile, and if the process stops before its turn, it is sent then.
QUEUED_RECHECK = timedelta(minutes=1)


def warning_lease(request_id: str) -> str:
    """The lease a replica holds while a request's warning waits behind its DMs: past the recheck time,
    the other replicas still leave it to that replica (until it dies and the lease expires)."""
    return f"warning:{request_id}"


def warn_at_for(flow: Flow | None, start: datetime, end: datetime) -> datetime | None:
    """When to warn about access running from `start` to `end` under `flow`'s warn_before (None: no warning)."""
    if flow is None or not flow.warn_before:
        return None
    if end - start < 2 * flow.warn_before:
        return None
    return end - flow.warn_before


class EndWarnings:
    """Sends due warnings, once each; see the module docstring."""

    def __init__(self, life: Lifecycle) -> None:
        self.life = life
        self._queued: set[str] = set()  # requests whose warning waits in this process's DM lane

    async def warn(self, request_id: str) -> AccessRequest | None:
        """Send the warning of one granted request if it is due; re-arm it if it is early."""
        life = self.life
        claims = life.guards.claims  # replicas only
        if (
            claims is not None
            and request_id not in self._queued
            and await claims.busy_elsewhere([warning_lease(request_id)])
        ):
            return None  # it waits behind another replica's DMs: that replica sends it
        async with life.lock(request_id):
            request = await life.requests.get(request_id)
            if request.status is not S.GRANTED or request.warn_at is None or request.revoked_by is not None:
                return None
            now = life.clock.now()
            if request.warn_at > now:
                life.timers.arm_warn(request_id, request.warn_at)
                return None
            late = request.expires_at is None or request.expires_at <= now
            if not late and life.follow_ups.owed(request_id, Lane.PERSON):
                # Behind DMs still owed (a "granted" DM Slack throttles) the warning is queued, to keep
                # the DMs in order. The row keeps it due a little later (QUEUED_RECHECK): the sweeps,
                # other replicas' too, leave it to this queue meanwhile, and a stop before its turn
                # does not lose it.
                request = await life.requests.update(
                    request_id, {"warn_at": now + QUEUED_RECHECK}, expected_status=S.GRANTED, audit=None
                )
                if request_id not in self._queued and (
                    claims is None or await claims.try_take(warning_lease(request_id))
                ):
                    self._queued.add(request_id)
                    life.follow_ups.add(
                        request_id, lambda: self._send_if_live(request_id), lane=Lane.PERSON, what="warning"
                    )
                return request
            request = await life.requests.update(
                request_id, {"warn_at": None}, expected_status=S.GRANTED, audit=None if late else self._warned(request)
            )
            if late:  # the access is ending anyway: a warning now would only confuse
                return None
            log.info("access.warned", request_id=request_id)
            # Sent under the lock: a Revoke now waits for it, so the warning never follows the end.
            await life.tell(request, RequesterNotice.WARNING)
        return request

    def _warned(self, request: AccessRequest) -> AuditEvent:
        """The audit row of a warning sent about `request`."""
        ends = request.expires_at.isoformat() if request.expires_at else None
        return self.life.event(request, SYSTEM, "access.warned", detail={"expires_at": ends})

    async def _send_if_live(self, request_id: str) -> None:
        """Send a queued warning if it is still owed (not sent meanwhile, by another replica say) and
        the access it warns about is still live and not past its end."""
        life = self.life
        self._queued.discard(request_id)
        try:
            await self._send_locked(request_id)
        finally:
            if life.guards.claims is not None:  # taken when it was queued
                await life.guards.claims.give_back(warning_lease(request_id))

    async def _send_locked(self, request_id: str) -> None:
        life = self.life
        async with life.lock(request_id):
            request = await life.requests.get(request_id)
            if request.warn_at is None:
                return  # sent meanwhile (by another replica, say), or the access ended
            # Its warn_at is the recheck time written when it was queued, whatever it is now: nothing
            # else moves a grant's warn_at later (an extension warns on its own request).
            ends = request.expires_at
            if (
                request.status is not S.GRANTED
                or request.revoked_by is not None
                or ends is None
                or ends <= life.clock.now()
            ):
                log.info("warning.dropped_after_end", request_id=request_id)
                return
            await life.requests.update(
                request_id, {"warn_at": None}, expected_status=S.GRANTED, audit=self._warned(request)
            )
            log.info("access.warned", request_id=request_id)
            await life.tell(request, RequesterNotice.WARNING)

    async def sweep(self) -> int:
        """Send every warning that is due (after a restart, or a timer that never fired); how many were due."""
        due = await self.life.requests.list_due_warnings(self.life.clock.now())

        async def guarded(request_id: str) -> None:
            try:
                await self.warn(request_id)
            except Exception:
                log.exception("warning.failed", request_id=request_id)

        await asyncio.gather(*(guarded(r.id) for r in due))
        return len(due)
