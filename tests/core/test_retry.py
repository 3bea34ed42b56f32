"""The back-off policies and the retry loop every strategy uses (core/retry.py)."""

from __future__ import annotations

import asyncio

import pytest

from core.retry import IN_CALL, REVOCATION, STATUS_POLL, Backoff, Retry, call
from tests.fakes.clock import FakeTime


class Flaky:
    """Fails with `error(n)` on the first `failures` tries, then answers 'done'."""

    def __init__(self, failures: int, error) -> None:
        self.failures, self.error, self.tries = failures, error, 0

    async def __call__(self) -> str:
        self.tries += 1
        if self.tries <= self.failures:
            raise self.error(self.tries)
        return "done"


def test_a_failed_revocation_is_retried_after_2_4_8_seconds_and_never_more_than_five_minutes_apart():
    assert [REVOCATION.delay(n) for n in range(1, 12)] == [2, 4, 8, 16, 32, 64, 128, 256, 300, 300, 300]
    assert REVOCATION.delay(0) == 2, "no failure counted yet waits like the first"
    assert REVOCATION.delay(5_000) == 300, "days of failures still give five minutes, not an overflow"
    assert REVOCATION.attempts is None, "a revocation is retried until it succeeds"


def test_retries_inside_a_call_wait_half_a_second_then_double_up_to_eight_seconds():
    assert [IN_CALL.delay(n) for n in range(1, 8)] == [0.5, 1, 2, 4, 8, 8, 8]
    assert [STATUS_POLL.delay(n) for n in range(1, 7)] == [0.5, 1, 2, 4, 5, 5]


async def test_an_operation_that_fails_twice_is_tried_again_after_the_policys_pauses():
    pauses, flaky = FakeTime(), Flaky(2, lambda n: Retry(RuntimeError(f"failure {n}")))
    assert await call(flaky, IN_CALL, sleep=pauses.sleep) == "done"
    assert pauses.sleeps == [0.5, 1.0] and flaky.tries == 3
    assert all(type(p) is float for p in pauses.sleeps), "the injected sleep gets plain seconds"


async def test_when_no_try_is_left_the_final_error_is_raised_with_its_cause():
    pauses = FakeTime()

    async def always_down() -> None:
        try:
            raise ConnectionError("refused")
        except ConnectionError as exc:
            raise Retry(LookupError("gave up")) from exc

    with pytest.raises(LookupError, match="gave up") as caught:
        await call(always_down, Backoff(attempts=3), sleep=pauses.sleep)
    assert isinstance(caught.value.__cause__, ConnectionError)
    assert pauses.sleeps == [0.5, 1.0], "three tries, two pauses"


async def test_a_wait_the_server_asked_for_replaces_the_policys_pause():
    pauses, flaky = FakeTime(), Flaky(2, lambda n: Retry(RuntimeError("throttled"), wait=7.0))
    assert await call(flaky, IN_CALL, sleep=pauses.sleep) == "done"
    assert pauses.sleeps == [7.0, 7.0]


async def test_an_error_nobody_asked_to_retry_is_raised_at_once():
    pauses, flaky = FakeTime(), Flaky(5, lambda n: PermissionError("denied"))
    with pytest.raises(PermissionError):
        await call(flaky, IN_CALL, sleep=pauses.sleep)
    assert flaky.tries == 1 and pauses.sleeps == []


async def test_errors_the_caller_names_are_retried_and_the_last_one_is_raised_as_it_was():
    pauses, flaky = FakeTime(), Flaky(10, lambda n: TimeoutError(f"try {n}"))
    with pytest.raises(TimeoutError, match="try 4"):
        await call(
            flaky,
            Backoff(first=1, factor=2, cap=3, attempts=4),
            sleep=pauses.sleep,
            retry_if=lambda error: isinstance(error, TimeoutError),
        )
    assert pauses.sleeps == [1, 2, 3]


async def test_no_pause_is_taken_that_would_end_after_the_deadline():
    pauses, flaky = FakeTime(), Flaky(100, lambda n: Retry(RuntimeError(f"still pending after {n} looks")))
    with pytest.raises(RuntimeError, match="after 5 looks"):
        await call(flaky, STATUS_POLL, sleep=pauses.sleep, deadline=pauses.now + 10.0, monotonic=pauses.monotonic)
    assert pauses.sleeps == [0.5, 1.0, 2.0, 4.0], "the next 5 s pause would end at 12.5 s, past the deadline"


async def test_each_pause_is_announced_with_the_error_that_caused_it():
    pauses, heard = FakeTime(), []
    flaky = Flaky(2, lambda n: Retry(RuntimeError(f"failure {n}")))
    await call(
        flaky, IN_CALL, sleep=pauses.sleep, before_sleep=lambda error, seconds: heard.append((str(error), seconds))
    )
    assert heard == [("failure 1", 0.5), ("failure 2", 1.0)]


async def test_a_cancelled_call_is_not_retried():
    pauses, flaky = FakeTime(), Flaky(5, lambda n: asyncio.CancelledError())
    with pytest.raises(asyncio.CancelledError):
        await call(flaky, IN_CALL, sleep=pauses.sleep, retry_if=lambda error: isinstance(error, Exception))
    assert flaky.tries == 1


async def test_a_cancelled_call_is_cancelled_after_one_try_never_retried():
    started = asyncio.Event()
    tries = 0

    async def operation():
        nonlocal tries
        tries += 1
        if tries == 1:
            started.set()
            await asyncio.sleep(3600)
        return "retried after a cancel"

    task = asyncio.create_task(
        call(operation, Backoff(first=0, attempts=5), sleep=asyncio.sleep, retry_if=lambda _: True)
    )
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert tries == 1
