import asyncio
from datetime import timedelta

from core.clock import SystemClock
from core.scheduler import Scheduler


class RecordingReminders:
    def __init__(self, due=()):
        self.reminded = asyncio.Queue()
        self._due = list(due)

    async def schedule(self, until):
        return [row for row in self._due if row[1] <= until]

    async def remind(self, request_id):
        await self.reminded.put(request_id)
        return True


class RecordingEngine:
    def __init__(self, granted=(), pending=(), warnings=(), reminders=()):
        self.revoked = asyncio.Queue()
        self.expired = asyncio.Queue()
        self.warned = asyncio.Queue()
        self.sweeps = 0
        self.requests = self
        self.reminders = RecordingReminders(reminders)
        self._granted, self._pending, self._warnings = list(granted), list(pending), list(warnings)

    async def revoke(self, request_id):
        await self.revoked.put(request_id)

    async def expire(self, request_id):
        await self.expired.put(request_id)

    async def warn(self, request_id):
        await self.warned.put(request_id)

    async def sweep(self):
        self.sweeps += 1

    async def list_granted_schedule(self, until):
        return [row for row in self._granted if row[1] <= until]

    async def list_pending_timeouts(self, until):
        return [row for row in self._pending if row[1] <= until]

    async def list_warn_schedule(self, until):
        return [row for row in self._warnings if row[1] <= until]


async def test_an_armed_warning_fires_at_its_time_and_only_warnings_within_the_horizon_are_armed():
    clock = SystemClock()
    now = clock.now()
    engine = RecordingEngine(warnings=[("w1", now + timedelta(milliseconds=50)), ("w2", now + timedelta(hours=1))])
    scheduler = Scheduler(engine, clock, horizon=timedelta(minutes=10))
    scheduler.start()
    try:
        assert await scheduler.arm_window() == 1
        assert await asyncio.wait_for(engine.warned.get(), 5) == "w1"
        scheduler.arm_warn("w3", clock.now() + timedelta(minutes=1))
        scheduler.disarm("w3")
        assert scheduler.armed() == 0
    finally:
        await scheduler.shutdown()


async def test_an_armed_revocation_fires_at_its_time():
    clock = SystemClock()
    engine = RecordingEngine()
    scheduler = Scheduler(engine, clock)
    scheduler.start()
    try:
        scheduler.arm_revoke("r1", clock.now() + timedelta(milliseconds=50))
        scheduler.arm_revoke("r2", clock.now() - timedelta(seconds=30))  # overdue: runs at once
        fired = {await asyncio.wait_for(engine.revoked.get(), 5), await asyncio.wait_for(engine.revoked.get(), 5)}
        assert fired == {"r1", "r2"}
    finally:
        await scheduler.shutdown()


async def test_arming_twice_keeps_one_timer_and_disarm_removes_it():
    clock = SystemClock()
    scheduler = Scheduler(RecordingEngine(), clock)
    scheduler.start()
    try:
        scheduler.arm_revoke("r1", clock.now() + timedelta(minutes=1))
        scheduler.arm_revoke("r1", clock.now() + timedelta(minutes=2))
        scheduler.arm_expire("r1", clock.now() + timedelta(minutes=3))
        assert scheduler.armed() == 2
        scheduler.disarm("r1")
        assert scheduler.armed() == 0
    finally:
        await scheduler.shutdown()


async def test_only_timers_within_the_horizon_are_held_in_memory():
    clock = SystemClock()
    now = clock.now()
    engine = RecordingEngine(
        granted=[
            ("soon", now + timedelta(minutes=5), None),
            ("later", now + timedelta(hours=5), None),
            ("retrying", now - timedelta(minutes=1), now + timedelta(seconds=30)),
        ],
        pending=[("stale", now + timedelta(minutes=2))],
    )
    scheduler = Scheduler(engine, clock, horizon=timedelta(minutes=10))
    assert await scheduler.arm_window() == 3
    scheduler.arm_revoke("far", now + timedelta(days=1))
    ids = {job.id for job in scheduler._scheduler.get_jobs()}
    assert ids == {"revoke:soon", "revoke:retrying", "expire:stale"}
    assert scheduler._scheduler.get_job("revoke:retrying").trigger.run_date == now + timedelta(seconds=30)


async def test_the_sweep_runs_the_engine_sweep_then_arms_the_window():
    clock = SystemClock()
    engine = RecordingEngine(granted=[("soon", clock.now() + timedelta(minutes=1), None)])
    scheduler = Scheduler(engine, clock)
    await scheduler.sweep()
    assert engine.sweeps == 1 and scheduler.armed() == 1


async def test_a_periodic_job_keeps_running_after_a_failure_and_is_not_counted_as_a_timer():
    clock = SystemClock()
    scheduler = Scheduler(RecordingEngine(), clock)
    ran = asyncio.Queue()

    async def reconcile():
        await ran.put(clock.now())
        if ran.qsize() == 1:
            raise RuntimeError("the first run fails")  # logged; the job keeps its schedule

    scheduler.start(sweep=False)
    try:
        scheduler.every("reconcile", reconcile, timedelta(milliseconds=50))
        assert scheduler.armed() == 0
        first = await asyncio.wait_for(ran.get(), 5)
        second = await asyncio.wait_for(ran.get(), 5)
        assert second > first
    finally:
        await scheduler.shutdown()


async def test_a_reminder_timer_fires_at_its_time_and_disarm_forgets_it():
    clock = SystemClock()
    engine = RecordingEngine()
    scheduler = Scheduler(engine, clock)
    scheduler.start()
    try:
        scheduler.arm_remind("r1", clock.now() + timedelta(milliseconds=50))
        scheduler.arm_remind("r2", clock.now() + timedelta(minutes=5))
        scheduler.disarm("r2")  # decided: its reminder goes with its other timers
        assert await asyncio.wait_for(engine.reminders.reminded.get(), 5) == "r1"
        assert scheduler.armed() == 0
    finally:
        await scheduler.shutdown()


async def test_the_window_arms_the_reminders_that_fall_within_the_horizon():
    clock = SystemClock()
    soon, later = clock.now() + timedelta(minutes=2), clock.now() + timedelta(hours=2)
    scheduler = Scheduler(RecordingEngine(reminders=[("soon", soon), ("later", later)]), clock)
    scheduler.start(sweep=False)
    try:
        assert await scheduler.arm_window() == 1
        assert [job.id for job in scheduler._scheduler.get_jobs()] == ["remind:soon"]
    finally:
        await scheduler.shutdown()
