"""FollowUps: notifications after a recorded revocation run in the background, in order per request."""

from __future__ import annotations

import asyncio

import pytest

from core.follow_ups import FollowUps, alongside


async def test_follow_ups_of_one_request_run_in_the_order_they_were_added_even_when_the_first_is_slow():
    follow_ups, done = FollowUps(concurrency=4), []
    first_may_finish = asyncio.Event()

    async def slow() -> None:
        await first_may_finish.wait()
        done.append("r1:first")

    async def record(name: str) -> None:
        done.append(name)

    follow_ups.add("r1", slow, what="first")
    follow_ups.add("r1", lambda: record("r1:second"), what="second")
    follow_ups.add("r2", lambda: record("r2:only"), what="only")
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert done == ["r2:only"]  # another request is not held up by r1's slow edit
    first_may_finish.set()
    assert await follow_ups.drain(timeout=5) == 0
    assert done == ["r2:only", "r1:first", "r1:second"]


async def test_at_most_concurrency_follow_ups_run_at_once():
    follow_ups, running, peak = FollowUps(concurrency=3), 0, 0
    release = asyncio.Event()

    async def work() -> None:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await release.wait()
        running -= 1

    for i in range(10):
        follow_ups.add(f"r{i}", work, what="edit")
    for _ in range(5):
        await asyncio.sleep(0)
    assert peak == 3 and follow_ups.pending() == 10
    release.set()
    assert await follow_ups.drain(timeout=5) == 0 and peak == 3


async def test_a_failing_follow_up_is_logged_and_the_next_one_of_the_request_still_runs():
    follow_ups, done = FollowUps(), []

    async def boom() -> None:
        raise RuntimeError("slack is down")

    async def record() -> None:
        done.append("second")

    follow_ups.add("r1", boom, what="edit")
    follow_ups.add("r1", record, what="dm")
    assert await follow_ups.drain(timeout=5) == 0
    assert done == ["second"]


async def test_drain_gives_up_at_its_timeout_and_cancel_stops_what_is_left():
    follow_ups = FollowUps()
    never = asyncio.Event()
    follow_ups.add("r1", never.wait, what="stuck")
    assert await follow_ups.drain(timeout=0.01) == 1
    assert await follow_ups.cancel() == 1
    assert follow_ups.pending() == 0


async def test_the_halves_of_a_follow_up_run_side_by_side_and_it_ends_only_with_the_slower_one():
    edit_may_finish, order = asyncio.Event(), []

    async def edit():  # a throttled channel edit
        await edit_may_finish.wait()
        order.append("edit")
        raise RuntimeError("edit failed")

    async def rest():  # the DM, then the hook
        order.append("dm")
        raise ValueError("dm failed")

    both = asyncio.create_task(alongside(edit(), rest(), request_id="r1", what="granted"))
    for _ in range(5):
        await asyncio.sleep(0)
    assert order == ["dm"] and not both.done()  # the DM did not wait; the follow-up is still owed
    edit_may_finish.set()
    with pytest.raises(RuntimeError, match="edit failed"):  # the first half's failure is the follow-up's
        await both
    assert order == ["dm", "edit"]
