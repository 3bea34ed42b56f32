"""FrozenClock: a clock that moves only when a test says so; FakeTime: a sleep that only moves a clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta


class FrozenClock:
    """Implements core.clock.Clock; `advance()` moves time forward."""

    def __init__(self, start: datetime | None = None) -> None:
        self._now = start or datetime(2026, 11, 21, 12, 0, tzinfo=UTC)

    def now(self) -> datetime:
        """The frozen current time."""
        return self._now

    def advance(self, delta: timedelta | None = None, **kwargs: float) -> datetime:
        """Move time forward by `delta` or by timedelta keyword arguments; return the new time."""
        self._now += delta if delta is not None else timedelta(**kwargs)
        return self._now

    def set(self, moment: datetime) -> None:
        """Jump to `moment`."""
        self._now = moment


class FakeTime:
    """An injected sleep that returns at once but advances a fake monotonic clock, recording pauses."""

    def __init__(self) -> None:
        self.now = 1_000.0
        self.sleeps: list[float] = []

    async def sleep(self, seconds: float) -> None:
        """Record the pause and move the clock past it."""
        self.sleeps.append(seconds)
        self.now += seconds

    def monotonic(self) -> float:
        """The fake monotonic time."""
        return self.now
