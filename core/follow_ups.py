"""Work that follows a recorded step (message edits, DMs, after_* hooks), run in the background.

A revocation is done once the target system has taken the access back and the row says so; telling
people about it is a follow-up. Slack may throttle message edits for minutes (429 with Retry-After),
and a revocation that waited for its edit would hold up every revocation queued behind it. So the
revocation hands its notifications to `FollowUps` and returns. A grant does the same, and its
follow-up also waits (`after`) until no other click is on its way to its strategy call.

Follow-ups run in lanes (`Lane`), by what they send: Slack limits `chat.update` apart from DMs, and
may refuse edits for minutes while DMs still go through; an operator's after_* hook may take its
whole timeout. A request's follow-ups in one lane run in the order they were added (a later edit
never lands before an earlier one; the end warning never arrives before the "granted" DM), and never
wait for another lane: the requester hears that access was granted, or is about to end, while the
channel edit is still being refused. Each lane runs at most `concurrency` follow-ups at once (a burst
of 1,000 revocations does not become 1,000 concurrent Slack calls racing one rate limit), with slots
of its own, so edits waiting out a throttle, or slow hooks, hold up no DM; a message's first post
(`chat.postMessage`, limited apart from edits) has slots of its own too. A failure is logged, never
raised. At shutdown `drain()` waits for them within the stop's time budget; what is left is counted in
the log, cancelled, and nothing added after that starts.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from enum import Enum

import structlog

log = structlog.get_logger("jitbot.engine")

FOLLOW_UP_CONCURRENCY = 8


class Lane(Enum):
    """What a follow-up sends, by the Slack limit it shares; one lane never waits for another."""

    MESSAGE = "message"  # a request's channel message: its first post and its edits (chat.update)
    PERSON = "person"  # DMs to the requester (chat.postMessage)
    HOOK = "hook"  # the after_grant / after_revoke hooks, each added once the DM before it was sent
    HOME = "home"  # App Home views (views.publish)


# The key and lane of the follow-up the current task is running (None outside one): what it sends in
# its own lane runs in place.
_running: ContextVar[tuple[str, Lane] | None] = ContextVar("jitbot_follow_up", default=None)


class FollowUps:
    """Background follow-ups, ordered per key (a request id) and lane; see the module docstring."""

    def __init__(self, concurrency: int = FOLLOW_UP_CONCURRENCY) -> None:
        self._gates = {lane: asyncio.Semaphore(concurrency) for lane in Lane}
        self._first_posts = asyncio.Semaphore(concurrency)  # in the message lane, apart from its edits
        self._tails: dict[tuple[str, Lane], asyncio.Task[None]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._stopped = False  # set by `cancel()`: the clients are about to close, nothing new starts

    def add(
        self,
        key: str,
        work: Callable[[], Awaitable[object]],
        *,
        lane: Lane,
        what: str,
        after: Callable[[], Awaitable[object]] | None = None,
        first_post: bool = False,
    ) -> None:
        """Run `work()` after every follow-up already added for `key` in `lane`, and after `after()`
        returns (a wait of bounded length); `what` names it in the log. `first_post`: the work posts
        the request's channel message (it has none yet), and takes a first post's slot, not an edit's.
        Once `cancel()` has run (the stop), nothing is added: it would run against closed clients."""
        if self._stopped:
            # E.g. an edit cut short by the stop tells the App Home refresh in its `finally`.
            log.info("follow_up.dropped_at_stop", request_id=key, what=what)
            return
        tail = (key, lane)
        previous = self._tails.get(tail)

        async def run() -> None:
            if previous is not None:
                await asyncio.wait({previous})  # its outcome is its own: only the order matters here
            if after is not None:
                await after()  # before taking a slot: a waiting follow-up holds up no other
            async with self._first_posts if first_post else self._gates[lane]:
                _running.set(tail)
                try:
                    await work()
                except Exception:
                    log.exception("follow_up.failed", request_id=key, lane=lane.value, what=what)

        task = asyncio.create_task(run(), name=f"jitbot-follow-up:{what}:{lane.value}:{key}")
        self._tails[tail] = task
        self._tasks.add(task)
        task.add_done_callback(lambda done: self._forget(tail, done))

    def owed(self, key: str, lane: Lane) -> bool:
        """Whether follow-ups of `key` in `lane` are still to run, and the caller is not one of them:
        whatever else it sends about `key` in that lane must queue behind them (an earlier edit never
        lands after a later one)."""
        task = self._tails.get((key, lane))
        return task is not None and not task.done() and _running.get() != (key, lane)

    def owed_after_current(self, key: str, lane: Lane) -> bool:
        """Whether a follow-up of `key` in `lane` other than the calling one is still to run (added
        after it, so it sends what is newer)."""
        task = self._tails.get((key, lane))
        return task is not None and not task.done() and task is not asyncio.current_task()

    def _forget(self, tail: tuple[str, Lane], task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if self._tails.get(tail) is task:
            del self._tails[tail]

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
