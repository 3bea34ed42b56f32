"""Crash recovery and the sweep: what settles everything that is due, whatever the timers did.

`Recovery.recover` runs once at start: it expires the pending requests of removed flows, finishes
each row a stop left `approved` (through `Expiry.revoke`, under the request's lock), then sweeps.
`Recovery.sweep` is the safety net under the timers, every minute (and the replicas' due-work
poll): overdue revocations and clean-ups, timed-out pending requests, rows left `approved` by a
failed write that no one is granting, and what never reached its channel, 20 at a time, skipping
what another replica holds; one item's failure is logged and never stops the others. It is apart
from `core.expiry` because it decides *what* is due and runs it, while `Expiry` does each thing
(revoke, clean up, expire) for one request; it only calls `Expiry`'s public steps.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import structlog

from core.claims import WAIT_FOR_REQUESTS, ClaimedElsewhere
from core.expiry import Expiry
from core.lifecycle import Lifecycle
from core.models import AccessRequest
from core.models import RequestStatus as S
from core.unposted import post_live, repost_pending
from core.unposted import unposted as unposted_requests

log = structlog.get_logger("jitbot.engine")


class Recovery:
    """recover / sweep; see the module docstring."""

    def __init__(self, life: Lifecycle, expiry: Expiry) -> None:
        self.life = life
        self.expiry = expiry

    async def recover(self) -> dict[str, int]:
        """At start: end requests of removed flows, settle half-done grants, then sweep."""
        life = self.life
        counts = {"regranted": 0, "in_doubt_revoked": 0, "flow_removed_expired": 0}
        pending = await life.requests.list_by_status(S.PENDING)
        approved = await life.requests.list_by_status(S.APPROVED)
        # Another replica at work on a row: it finishes it (or, if it dies, a later sweep does).
        elsewhere = await life.busy_elsewhere([r.id for r in [*pending, *approved]])
        for listed in pending:
            if listed.id in elsewhere:
                continue
            if life.flow(listed.flow) is None:  # nobody can decide it any more
                async with life.lock(listed.id):
                    request = await life.requests.get(listed.id)  # as it is now, not as listed
                    if request.status is S.PENDING and await self._guarded(
                        self.expiry.expire_locked, request, f"flow '{request.flow}' was removed from the configuration"
                    ):
                        counts["flow_removed_expired"] += 1
        for listed in approved:
            if listed.id in elsewhere:
                continue
            in_doubt = listed.expires_at is not None and listed.expires_at <= life.clock.now()
            if await self._guarded(self.expiry.revoke, listed.id) is not None:  # re-read under its lock
                counts["in_doubt_revoked" if in_doubt else "regranted"] += 1
        counts.update(await self.sweep())
        log.info("recovery.done", **counts)
        return counts

    async def sweep(self, *, concurrency: int = 20, repost: bool = True) -> dict[str, int]:
        """Do everything that is due; the safety net under the timers, and what finishes a failed write."""
        life = self.life
        now = life.clock.now()
        due = await life.requests.list_due_revocations(now)
        stale = await life.requests.list_pending_timed_out(now)
        # Rows left `approved` by a failed write: not while this process (or another replica) is
        # still granting them. A replica that died stops renewing its lease, and its rows come back here.
        stuck = [r for r in await life.requests.list_by_status(S.APPROVED) if not life.busy(r.id)]
        unposted, live_unposted = await unposted_requests(life) if repost else ([], [])
        elsewhere = await life.busy_elsewhere([r.id for r in [*due, *stale, *stuck, *unposted, *live_unposted]])
        if elsewhere:
            due, stale, stuck, unposted, live_unposted = (
                [r for r in rows if r.id not in elsewhere] for rows in (due, stale, stuck, unposted, live_unposted)
            )
        gate = asyncio.Semaphore(concurrency)

        async def guarded(fn: Callable[[str], Awaitable[object]], request_id: str) -> None:
            async with gate:
                WAIT_FOR_REQUESTS.set(False)  # this task's own context: skip what another replica holds
                try:
                    await fn(request_id)
                except ClaimedElsewhere:
                    log.debug("sweep.item_elsewhere", request_id=request_id)
                except Exception:
                    log.exception("sweep.item_failed", request_id=request_id)

        await asyncio.gather(
            *(guarded(self.expiry.revoke, r.id) for r in [*due, *stuck]),
            *(guarded(self.expiry.expire, r.id) for r in stale),
            *(guarded(lambda request_id: repost_pending(life, request_id), r.id) for r in unposted),
            *(guarded(lambda request_id: post_live(life, request_id), r.id) for r in live_unposted),
        )
        return {
            "revoked_due": len(due),
            "expired": len(stale),
            "settled": len(stuck),
            "reposted": len(unposted),
            "live_posted": len(live_unposted),
        }

    async def _guarded(self, fn: Callable[..., Awaitable[AccessRequest | None]], *args: object) -> AccessRequest | None:
        """Run one recovery step; a failure is logged and the next step still runs."""
        try:
            return await fn(*args)
        except Exception:
            log.exception("recovery.item_failed", step=getattr(fn, "__name__", "step"))
            return None
