"""Timers for revocations, request timeouts, reminders and warnings: APScheduler in memory, the database as
the source of truth.

Only timers that fall within `horizon` are held in memory; the periodic sweep arms the next window
and revokes anything overdue. That keeps start-up fast and memory flat with 100,000 live grants,
and a lost timer (a crash, a clock jump) is caught by the next sweep.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog
from apscheduler.schedulers.asyncio import AsyncIOScheduler

from core.claims import Claims
from core.clock import Clock, OffsetClock
from core.engine import AccessEngine

log = structlog.get_logger("jitbot.scheduler")


class Scheduler:
    """Arms `revoke:<id>`, `expire:<id>` and `warn:<id>` jobs and runs the sweep every `sweep_interval`."""

    def __init__(
        self,
        engine: AccessEngine,
        clock: Clock,
        *,
        horizon: timedelta = timedelta(minutes=10),
        sweep_interval: timedelta = timedelta(minutes=1),
        due_interval: timedelta = timedelta(seconds=0.5),
    ) -> None:
        self.engine = engine
        self.clock = clock
        self.horizon = horizon
        self.sweep_interval = sweep_interval
        self.due_interval = due_interval
        self.claims: Claims | None = None  # replicas: the composition root sets this process's leases
        self._running: set[asyncio.Task[Any]] = set()
        self._periodic: set[str] = {"sweep"}  # job ids that are not per-request timers
        self._scheduler = AsyncIOScheduler(
            timezone=UTC,
            # A job that fires late still runs (never skipped as "misfired"); duplicates coalesce.
            job_defaults={"misfire_grace_time": None, "coalesce": True, "max_instances": 1},
        )

    def start(self, *, sweep: bool = True) -> None:
        """Start the scheduler (call inside the running event loop), and its periodic sweep unless
        `sweep=False` (then call `start_sweep()` once recovery is done: a sweep racing recovery could
        settle a row recovery is about to act on).

        Start it before anything arms timers: APScheduler only de-duplicates job ids once running.
        """
        if self._scheduler.running:
            return
        self._scheduler.start()
        if sweep:
            self.start_sweep()

    def start_sweep(self) -> None:
        """Run the sweep every `sweep_interval` from now on; with replicas, also poll due work every
        `due_interval`: a replica that died stops renewing its leases, and its due work comes back here."""
        self._scheduler.add_job(
            self.sweep, "interval", seconds=self.sweep_interval.total_seconds(), id="sweep", replace_existing=True
        )
        if self.claims is not None:
            self.every("due", self._due, self.due_interval, one_replica=False)

    async def _due(self) -> None:
        await self.engine.sweep(repost=False)

    def every(
        self, job_id: str, fn: Callable[[], Awaitable[object]], interval: timedelta, *, one_replica: bool = True
    ) -> None:
        """Run `fn` every `interval` from now on (a periodic job whose own state lives in the database,
        such as drift reconciliation's last run per flow); a failure is logged, never raised. With
        replicas, each tick runs on one of them (`one_replica`), or on each (work leased row by row)."""

        async def run() -> None:
            structlog.contextvars.clear_contextvars()
            structlog.contextvars.bind_contextvars(timer=job_id)
            task = asyncio.current_task()
            if task is not None:
                self._running.add(task)  # drained by shutdown() like a revocation in flight
            claims = self.claims
            lease = f"job:{job_id}"
            try:
                # With replicas, one of them runs each tick (its state lives in the database anyway).
                if not one_replica or claims is None:
                    await fn()
                elif await claims.try_take(lease):
                    try:
                        await fn()
                    finally:
                        await claims.give_back(lease)
            except Exception:
                log.exception("periodic.failed", job=job_id)
            finally:
                if task is not None:
                    self._running.discard(task)

        self._scheduler.add_job(run, "interval", seconds=interval.total_seconds(), id=job_id, replace_existing=True)
        self._periodic.add(job_id)

    async def shutdown(self, grace: float = 10.0) -> None:
        """Stop firing timers, give revocations already running `grace` seconds to finish, then cancel
        the rest (their rows stay due: the next start or sweep finishes them)."""
        if self._scheduler.running:
            self._scheduler.shutdown(wait=False)
        running = {task for task in self._running if not task.done()}
        if running:
            log.info("scheduler.draining", jobs=len(running))
            await asyncio.wait(running, timeout=grace)
        left = {task for task in self._running if not task.done()}
        if left:
            log.warning("scheduler.cancelled", jobs=len(left))
            for task in left:
                task.cancel()
            await asyncio.wait(left, timeout=1.0)

    def arm_revoke(self, request_id: str, when: datetime) -> None:
        """Revoke `request_id` at `when` (or on a later sweep when beyond the horizon)."""
        self._arm(f"revoke:{request_id}", self.engine.revoke, request_id, when)

    def arm_expire(self, request_id: str, when: datetime) -> None:
        """Expire pending `request_id` at `when`."""
        self._arm(f"expire:{request_id}", self.engine.expire, request_id, when)

    def arm_warn(self, request_id: str, when: datetime) -> None:
        """Send `request_id`'s end-of-access warning at `when`."""
        self._arm(f"warn:{request_id}", self.engine.warn, request_id, when)

    def disarm(self, request_id: str) -> None:
        """Forget every timer of a request (it was decided, ended, or handed its access over)."""
        for prefix in ("revoke", "expire", "warn"):
            job = self._scheduler.get_job(f"{prefix}:{request_id}")
            if job is not None:
                job.remove()
        self.disarm_remind(request_id)

    def arm_remind(self, request_id: str, when: datetime) -> None:
        """Post `request_id`'s next reminder at `when` (it re-checks that the request is still pending)."""
        self._arm(f"remind:{request_id}", self._remind, request_id, when)

    def disarm_remind(self, request_id: str) -> None:
        """Forget a request's reminder timer (it was decided)."""
        job = self._scheduler.get_job(f"remind:{request_id}")
        if job is not None:
            job.remove()

    async def _remind(self, request_id: str) -> bool:
        return await self.engine.reminders.remind(request_id)

    def armed(self) -> int:
        """How many revoke / expire timers are held in memory."""
        return sum(1 for job in self._scheduler.get_jobs() if job.id not in self._periodic)

    def _arm(self, job_id: str, fn: Callable[[str], Awaitable[object]], request_id: str, when: datetime) -> None:
        if when > self.clock.now() + self.horizon:
            return  # the sweep arms it when it comes within the horizon
        # APScheduler fires by the wall clock: a clock that runs ahead (the sandbox's) is translated.
        run_date = self.clock.to_wall(when) if isinstance(self.clock, OffsetClock) else when
        self._scheduler.add_job(
            self._run_timer, "date", run_date=run_date, args=[fn, job_id, request_id], id=job_id, replace_existing=True
        )

    async def _run_timer(self, fn: Callable[[str], Awaitable[object]], job_id: str, request_id: str) -> None:
        # APScheduler runs the job in the context of whatever armed it (often a Slack click):
        # without a fresh log context, a timer's revocation would be logged as that click.
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(timer=job_id)
        task = asyncio.current_task()  # APScheduler's asyncio executor runs every job as a task
        if task is not None:
            self._running.add(task)
        try:
            await fn(request_id)
        except Exception:
            log.exception("timer.failed", job=job_id)
        finally:
            if task is not None:
                self._running.discard(task)

    async def sweep(self) -> None:
        """Revoke and expire what is due, then arm every timer that falls within the horizon."""
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(timer="sweep")
        try:
            await self.engine.sweep()
            await self.arm_window()
        except Exception:
            log.exception("sweep.failed")

    async def arm_window(self) -> int:
        """Arm timers for grants and pending requests ending within the horizon; return how many."""
        until = self.clock.now() + self.horizon
        count = 0
        for request_id, expires_at, next_attempt_at in await self.engine.requests.list_granted_schedule(until):
            self.arm_revoke(request_id, max(expires_at, next_attempt_at or expires_at))
            count += 1
        for request_id, timeout_at in await self.engine.requests.list_pending_timeouts(until):
            self.arm_expire(request_id, timeout_at)
            count += 1
        for request_id, warn_at in await self.engine.requests.list_warn_schedule(until):
            self.arm_warn(request_id, warn_at)
            count += 1
        count += await self.arm_reminders(until)
        return count

    async def arm_reminders(self, until: datetime) -> int:
        """Arm the next reminder of every pending request whose reminder falls before `until`."""
        due = await self.engine.reminders.schedule(until)
        for request_id, when in due:
            self.arm_remind(request_id, when)
        return len(due)
