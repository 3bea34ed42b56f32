"""Work that follows a recorded step (message edits, DMs, after_* hooks), run in the background.

A revocation is done once the target system has taken the access back and the row says so; telling
people about it is a follow-up. Slack may throttle message edits for minutes (429 with Retry-After),
and a revocation that waited for its edit would hold up every revocation queued behind it. So the
revocation hands its notifications to `FollowUps` and returns. A grant does the same, and its
follow-up also waits (`after`) until no other click is on its way to its strategy call.

Follow-ups of one request run in the order they were added (a later edit never lands before an
earlier one), at most `concurrency` at once (a burst of 1,000 revocations does not become 1,000
concurrent Slack calls racing one rate limit), and a failure is logged, never raised. At shutdown
`drain()` waits for them within the stop's time budget; what is left is counted in the log, cancelled,
and nothing added after that starts.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from contextvars import ContextVar

import structlog

log = structlog.get_logger("jitbot.engine")

FOLLOW_UP_CONCURRENCY = 8

# The key of the follow-up the current task is running (None outside one): its own edits run in place.
_running: ContextVar[str | None] = ContextVar("jitbot_follow_up", default=None)


class FollowUps:
    """Background follow-ups, ordered per key (a request id); see the module docstring."""

    def __init__(self, concurrency: int = FOLLOW_UP_CONCURRENCY) -> None:
        self._gate = asyncio.Semaphore(concurrency)
        self._tails: dict[str, asyncio.Task[None]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._stopped = False  # set by `cancel()`: the clients are about to close, nothing new starts

    def add(
        self,
        key: str,
        work: Callable[[], Awaitable[object]],
        *,
        what: str,
        after: Callable[[], Awaitable[object]] | None = None,
    ) -> None:
        """Run `work()` after every follow-up already added for `key`, and after `after()` returns
        (a wait of bounded length); `what` names it in the log. Once `cancel()` has run (the stop),
        nothing is added: it would run against closed clients."""
        if self._stopped:
            # E.g. an edit cut short by the stop tells the App Home refresh in its `finally`.
            log.info("follow_up.dropped_at_stop", request_id=key, what=what)
            return
        previous = self._tails.get(key)

        async def run() -> None:
            if previous is not None:
                await asyncio.wait({previous})  # its outcome is its own: only the order matters here
            if after is not None:
                await after()  # before taking a slot: a waiting follow-up holds up no other
            async with self._gate:
                _running.set(key)
                try:
                    await work()
                except Exception:
                    log.exception("follow_up.failed", request_id=key, what=what)

        task = asyncio.create_task(run(), name=f"jitbot-follow-up:{what}:{key}")
        self._tails[key] = task
        self._tasks.add(task)
        task.add_done_callback(lambda done: self._forget(key, done))

    def owed(self, key: str) -> bool:
        """Whether follow-ups of `key` are still to run, and the caller is not one of them: whatever else
        it sends about `key` must queue behind them (an earlier edit never lands after a later one)."""
        tail = self._tails.get(key)
        return tail is not None and not tail.done() and _running.get() != key

    def _forget(self, key: str, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if self._tails.get(key) is task:
            del self._tails[key]

    def pending(self) -> int:
        """Follow-ups added and not finished yet."""
        return sum(1 for task in self._tasks if not task.done())

    async def drain(self, timeout: float | None = None) -> int:
        """Wait for every follow-up (those added meanwhile too) for at most `timeout` seconds; return
        how many were still unfinished (0 when all are done)."""
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        while running := {task for task in self._tasks if not task.done()}:
            remaining = None if deadline is None else deadline - loop.time()
            if remaining is not None and remaining <= 0:
                return len(running)
            await asyncio.wait(running, timeout=remaining)
        return 0

    async def cancel(self) -> int:
        """Cancel the follow-ups still running (at shutdown, once their time is up); return how many.
        Follow-ups added from then on (by those unwinding) are dropped."""
        self._stopped = True
        running = {task for task in self._tasks if not task.done()}
        for task in running:
            task.cancel()
        if running:
            await asyncio.wait(running, timeout=1.0)
        return len(running)


async def alongside(edit: Awaitable[object], rest: Awaitable[object], *, request_id: str, what: str) -> None:
    """Run a follow-up's channel edit and the rest of it (a DM, then a hook) side by side.

    Slack limits `chat.update` apart from DMs and may refuse an edit for minutes: the person and the
    hook need not wait for it. Both run to their end whatever the other does, so that what is queued
    behind the follow-up never starts while half of it still runs. A failure is then the follow-up's
    (FollowUps logs it); a second one is logged here, not lost.
    """
    outcomes = await asyncio.gather(edit, rest, return_exceptions=True)
    failures = [outcome for outcome in outcomes if isinstance(outcome, BaseException)]
    for failure in failures[1:]:
        log.error("follow_up.failed", request_id=request_id, what=what, exc_info=failure)
    if failures:
        raise failures[0]
