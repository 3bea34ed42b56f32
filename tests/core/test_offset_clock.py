"""The sandbox's fast-forward clock: it only moves forward, and timers armed by it fire on time."""

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from core.clock import OffsetClock
from core.scheduler import Scheduler
from tests.core.test_scheduler import RecordingEngine
from tests.fakes.clock import FrozenClock


def test_fast_forward_moves_the_clock_ahead_of_the_wall_and_never_back():
    wall = FrozenClock(datetime(2026, 1, 1, 12, 0, tzinfo=UTC))
    clock = OffsetClock(wall)
    assert clock.now() == wall.now()
    assert clock.advance(timedelta(minutes=15)) == datetime(2026, 1, 1, 12, 15, tzinfo=UTC)
    wall.advance(seconds=30)  # time keeps flowing after a jump
    assert clock.now() == datetime(2026, 1, 1, 12, 15, 30, tzinfo=UTC)
    assert clock.to_wall(clock.now()) == wall.now()
    for bad in (timedelta(0), timedelta(minutes=-1)):
        with pytest.raises(ValueError):
            clock.advance(bad)
    assert clock.offset == timedelta(minutes=15)


async def test_a_timer_armed_after_a_fast_forward_fires_when_the_moved_clock_reaches_it():
    clock = OffsetClock()
    clock.advance(timedelta(minutes=15))
    engine = RecordingEngine()
    scheduler = Scheduler(engine, clock)
    scheduler.start(sweep=False)
    try:
        # Due 50 ms from now on the moved clock: on the wall clock that is 15 minutes ago plus 50 ms.
        scheduler.arm_revoke("r1", clock.now() + timedelta(milliseconds=50))
        assert await asyncio.wait_for(engine.revoked.get(), 5) == "r1"
    finally:
        await scheduler.shutdown()
