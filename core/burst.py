"""What goes first under a burst: work a person is waiting on, before the notifications of work done.

Under a burst of clicks the event loop is shared by clicks on their way to their strategy calls and
the notifications of grants already made (a message edit, a DM, after_grant). The second kind waits
(`Burst.quiet`) while any of the first is open (`Burst.deciding`), for at most `wait` seconds, so a
steady stream of clicks delays a notification but never stops it.
"""

from __future__ import annotations

import asyncio

QUIET_WAIT = 2.0  # seconds a notification waits at most for the clicks still being decided


class Deciding:
    """One decision on its way to its strategy call; see `Burst.deciding`."""

    def __init__(self, burst: Burst) -> None:
        self._burst, self._open = burst, False

    def __enter__(self) -> Deciding:
        self._burst._opened()
        self._open = True
        return self

    def __exit__(self, *_: object) -> None:
        self.done()

    def done(self) -> None:
        """The decision has reached its strategy call (or ended): notifications need not wait for it."""
        if self._open:
            self._open = False
            self._burst._closed()


class Burst:
    """Counts the decisions under way and lets notifications wait for none to be; see the module docstring."""

    def __init__(self, wait: float = QUIET_WAIT) -> None:
        self.wait = wait
        self._open = 0
        self._quiet = asyncio.Event()
        self._quiet.set()

    def deciding(self) -> Deciding:
        """Mark a decision on its way to its strategy call (`with`, ended early by `done()`)."""
        return Deciding(self)

    async def quiet(self) -> None:
        """Return once no decision is under way, or after `wait` seconds."""
        if not self._quiet.is_set():
            try:
                await asyncio.wait_for(self._quiet.wait(), self.wait)
            except TimeoutError:
                pass

    def _opened(self) -> None:
        self._open += 1
        self._quiet.clear()

    def _closed(self) -> None:
        self._open -= 1
        if self._open == 0:
            self._quiet.set()
