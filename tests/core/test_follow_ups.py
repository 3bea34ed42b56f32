"""FollowUps: notifications after a recorded step run in the background, in order per request and lane,
and a lane held up by Slack (throttled edits) never holds up another (the DMs)."""

from __future__ import annotations

import asyncio

from core.follow_ups import FollowUps, Lane


async def test_follow_ups_of_one_request_run_in_the_order_they_were_added_even_when_the_first_is_slow():
    follow_ups, done = FollowUps(concurrency=4), []
    first_may_finish = asyncio.Event()

    async def slow() -> None:
        await first_may_finish.wait()
        done.append("r1:first")

    async def record(name: str) -> None:
        done.append(name)

    follow_ups.add("r1", slow, lane=Lane.MESSAGE, what="first")
    follow_ups.add("r1", lambda: record("r1:second"), lane=Lane.MESSAGE, what="second")
    follow_ups.add("r2", lambda: record("r2:only"), lane=Lane.MESSAGE, what="only")
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
        follow_ups.add(f"r{i}", work, lane=Lane.MESSAGE, what="edit")
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

    follow_ups.add("r1", boom, lane=Lane.PERSON, what="dm")
    follow_ups.add("r1", record, lane=Lane.PERSON, what="dm")
    assert await follow_ups.drain(timeout=5) == 0
    assert done == ["second"]


async def test_drain_gives_up_at_its_timeout_and_cancel_stops_what_is_left():
    follow_ups = FollowUps()
    never = asyncio.Event()
    follow_ups.add("r1", never.wait, lane=Lane.MESSAGE, what="stuck")
    assert await follow_ups.drain(timeout=0.01) == 1
    assert await follow_ups.cancel() == 1
    assert follow_ups.pending() == 0


async def test_edits_slack_keeps_refusing_hold_up_neither_the_dms_of_their_request_nor_those_of_others():
    """A burst of grants while Slack refuses chat.update: more edits wait out the throttle than the lane
    has slots. The "granted" DMs (and then the end warnings) still go out, each after its request's
    earlier DMs; the edits land, in order, once Slack lets them through."""
    follow_ups, sent = FollowUps(concurrency=2), []
    throttle_lifted = asyncio.Event()

    async def edit(name: str) -> None:
        await throttle_lifted.wait()
        sent.append(name)

    async def dm(name: str) -> None:
        sent.append(name)

    for r in ("r1", "r2", "r3"):
        follow_ups.add(r, lambda r=r: edit(f"{r}:granted edit"), lane=Lane.MESSAGE, what="granted")
        follow_ups.add(r, lambda r=r: dm(f"{r}:granted dm"), lane=Lane.PERSON, what="granted")
    follow_ups.add("r1", lambda: edit("r1:revoked edit"), lane=Lane.MESSAGE, what="revoked")
    follow_ups.add("r1", lambda: dm("r1:warning"), lane=Lane.PERSON, what="warning")
    for _ in range(5):
        await asyncio.sleep(0)
    assert sent == ["r1:granted dm", "r2:granted dm", "r3:granted dm", "r1:warning"]
    assert follow_ups.owed("r1", Lane.MESSAGE) and not follow_ups.owed("r1", Lane.PERSON)
    throttle_lifted.set()
    assert await follow_ups.drain(timeout=5) == 0
    edits = [name for name in sent if "edit" in name]
    assert edits.index("r1:granted edit") < edits.index("r1:revoked edit") and len(edits) == 4
