"""The back-off policies of jitbot, and the one retry loop every strategy uses.

Policies (`Backoff`: a first pause, ×`factor` per failure, up to `cap`, for `attempts` tries):
- `IN_CALL`: retries inside one strategy call (HTTP outages and rate limits, AWS throttling and
  conflicts): 0.5 s, 1 s, 2 s, 4 s, 8 s, 8 s…; each caller sets how many tries it makes.
- `STATUS_POLL`: pauses between polls of an asynchronous operation (AWS SSO assignments), 0.5 s
  growing to 5 s, bounded by the caller's deadline rather than a number of tries.
- `REVOCATION`: the durable schedule of a failed revocation or clean-up: 2 s, 4 s, 8 s, … capped at
  300 s, retried until it succeeds. The engine stores the failure count and asks `delay(count)`, so
  the schedule survives a restart; nothing here sleeps for it.

`call(operation, policy, sleep=…)` runs the loop. An operation asks for another try by raising
`Retry(final_error, wait=…)` (`wait` is what the server asked for, e.g. Retry-After; None: the
policy's pause), or by raising an exception `retry_if` accepts; when no try is left, the final
error (or that exception) is raised.

Why tenacity rather than stamina: stamina is an opinionated layer over tenacity (jittered pauses,
a 45 s total by default) that sleeps with its own function and has no per-call clock; tests either
sleep for real or flip its process-wide testing switch. We need exact pauses through an injected
`sleep` (tests record every pause), a pause taken from the server's answer, a deadline on an
injected clock, and no global state: tenacity's `AsyncRetrying` takes each as an argument. Its
`wait_exponential` is the one back-off formula here, for the in-call loop and the durable schedule.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential,
)

T = TypeVar("T")
Sleep = Callable[[float], Awaitable[Any]]


@dataclass(frozen=True)
class Backoff:
    """Capped exponential back-off: `first`, then ×`factor` up to `cap`; `attempts` tries in all (None: no limit)."""

    first: float = 0.5
    factor: float = 2.0
    cap: float = 8.0
    attempts: int | None = 6

    def wait(self, retry_state: RetryCallState) -> float:
        """The pause tenacity takes after a failed try (its `wait` strategy)."""
        return wait_exponential(multiplier=self.first, exp_base=self.factor, max=self.cap)(retry_state)

    def delay(self, attempt: int) -> float:
        """Seconds to wait after failure number `attempt` (1 is the first; 0 counts as 1)."""
        state = RetryCallState(retry_object=None, fn=None, args=(), kwargs={})  # type: ignore[arg-type]
        state.attempt_number = max(1, attempt)
        return self.wait(state)


IN_CALL = Backoff()
STATUS_POLL = Backoff(first=0.5, factor=2.0, cap=5.0, attempts=None)
REVOCATION = Backoff(first=2.0, factor=2.0, cap=300.0, attempts=None)
# A message edit after a revocation, once the Slack client's own Retry-After waits are spent: about
# 20 minutes in all, longer than Slack's one-minute rate-limit windows.
MESSAGE_EDIT = Backoff(first=2.0, factor=2.0, cap=300.0, attempts=8)


class Retry(Exception):
    """Raised by an operation under `call`: try again after `wait` seconds (None: the policy's pause).

    When no try is left, `call` raises `final`, with this exception's cause (`raise Retry(…) from exc`).
    """

    def __init__(self, final: BaseException, *, wait: float | None = None) -> None:
        super().__init__(str(final))
        self.final = final
        self.wait = wait


def _never(_error: BaseException) -> bool:
    return False


async def call(
    operation: Callable[[], Awaitable[T]],
    policy: Backoff,
    *,
    sleep: Sleep,
    retry_if: Callable[[BaseException], bool] = _never,
    deadline: float | None = None,
    monotonic: Callable[[], float] = time.monotonic,
    before_sleep: Callable[[BaseException, float], None] | None = None,
) -> T:
    """Await `operation()` until it returns, retrying `Retry` (and what `retry_if` accepts) as `policy` says.

    With `deadline` (on the `monotonic` clock) no pause is taken that would end after it.
    `before_sleep(error, seconds)` is called before each pause.
    """

    def pause(state: RetryCallState) -> float:
        error = state.outcome.exception() if state.outcome else None
        asked = error.wait if isinstance(error, Retry) else None
        return policy.wait(state) if asked is None else asked

    def out_of_tries(state: RetryCallState) -> bool:
        if policy.attempts is not None and stop_after_attempt(policy.attempts)(state):
            return True
        return deadline is not None and monotonic() + state.upcoming_sleep > deadline

    async def sleep_between(seconds: float) -> None:
        await sleep(float(seconds))  # tenacity passes its own float subclass; callers record plain seconds

    def report(state: RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome is not None else None
        if before_sleep is not None and error is not None:
            before_sleep(error, state.upcoming_sleep)

    # The first try runs without tenacity's machinery (about 20 µs a call): nearly every call
    # succeeds at once. A failure is handed to the loop below as its first try, so what follows is
    # exactly what tenacity does with it.
    try:
        return await operation()
    except BaseException as error:
        first: list[BaseException] = [error]

    async def attempt_again() -> T:
        if first:
            raise first.pop()
        return await operation()

    retrying = AsyncRetrying(
        sleep=sleep_between,
        stop=out_of_tries,
        wait=pause,
        # Only an Exception is ever retried: a cancellation (or KeyboardInterrupt) must go through at once.
        retry=retry_if_exception(
            lambda error: isinstance(error, Exception) and (isinstance(error, Retry) or retry_if(error))
        ),
        before_sleep=report,
        reraise=True,
    )
    try:
        async for attempt in retrying:
            with attempt:
                return await attempt_again()
    except Retry as exhausted:
        raise exhausted.final from exhausted.__cause__
    raise AssertionError("unreachable: the last try returns or raises")  # pragma: no cover
