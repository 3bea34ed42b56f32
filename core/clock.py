"""Time as a dependency, so tests drive expiry without sleeping."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    """Anything that can tell the current UTC time."""

    def now(self) -> datetime: ...


class SystemClock:
    """The wall clock, always timezone-aware UTC."""

    def now(self) -> datetime:
        """Return the current UTC time."""
        return datetime.now(UTC)


class OffsetClock:
    """The wall clock moved forward by an offset that only grows: the sandbox's fast-forward.

    Time keeps flowing; `advance()` jumps it ahead. The scheduler asks `to_wall()` when a moment
    of this clock falls on the wall clock, because its timers fire by the wall clock.
    """

    def __init__(self, wall: Clock | None = None) -> None:
        self._wall = wall or SystemClock()
        self._offset = timedelta(0)

    @property
    def offset(self) -> timedelta:
        """How far ahead of the wall clock this clock runs."""
        return self._offset

    def now(self) -> datetime:
        """The wall clock's time plus the offset."""
        return self._wall.now() + self._offset

    def advance(self, delta: timedelta) -> datetime:
        """Jump forward by `delta` (positive; time never goes back); return the new time."""
        if delta <= timedelta(0):
            raise ValueError("a clock only moves forward")
        self._offset += delta
        return self.now()

    def to_wall(self, moment: datetime) -> datetime:
        """When `moment` of this clock happens on the wall clock."""
        return moment - self._offset
