"""The background Home refresh on its own: changes to one person's requests make one publish, and the
pace is the limiter's, never faster (the end-to-end behaviour is tests/e2e/test_home_refresh.py)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

from aiolimiter import AsyncLimiter

from core.follow_ups import FollowUps, Lane
from core.models import AccessRequest, RequestStatus
from handlers.home_refresh import HomeRefresh


def request(requester: str, n: int = 0) -> AccessRequest:
    return AccessRequest(
        id=f"r{requester}{n}",
        flow="db_access",
        target="prod_admin",
        requester=requester,
        created_at=datetime(2026, 11, 30, tzinfo=UTC),
        duration_seconds=60,
        status=RequestStatus.GRANTED,
        approvers=(),  # routed to nobody: no Home lists it as waiting for a decision
    )


class Homes:
    """Stands in for Home.publish: records whose Home was published."""

    def __init__(self) -> None:
        self.published: list[str] = []

    async def __call__(self, client: Any, user: str) -> None:
        self.published.append(user)


def refresher(limiter: AsyncLimiter | None = None) -> tuple[HomeRefresh, Homes, FollowUps]:
    follow_ups = FollowUps()
    engine: Any = SimpleNamespace(life=SimpleNamespace(follow_ups=follow_ups), directory=None)
    homes = Homes()
    return HomeRefresh(engine, client=None, publish=homes, limiter=limiter), homes, follow_ups  # type: ignore[arg-type]


async def test_ten_changes_to_my_requests_make_one_publish_of_my_home():
    refresh, homes, follow_ups = refresher()
    refresh.shown("U_ALICE", [])
    for n in range(10):
        refresh.changed(request("U_ALICE", n))
    assert await follow_ups.drain(5) == 0
    assert homes.published == ["U_ALICE"]


async def test_nobody_is_published_who_never_had_a_home_and_nothing_runs_for_them():
    refresh, homes, follow_ups = refresher()
    refresh.shown("U_CAROL", [])
    refresh.changed(request("U_ALICE"))
    assert await follow_ups.drain(5) == 0
    assert homes.published == []


async def test_publishes_wait_for_the_limiter_and_never_run_ahead_of_it():
    refresh, homes, follow_ups = refresher(AsyncLimiter(1, 3600))  # one per hour
    for user in ("U_ALICE", "U_BOB", "U_CAROL"):
        refresh.shown(user, [])
        refresh.changed(request(user))
    for _ in range(20):
        await asyncio.sleep(0)
    assert homes.published == ["U_ALICE"]  # the others wait for the limiter's next slot
    assert follow_ups.pending() == 1  # one worker for all of them, not one task per Home
    assert await follow_ups.cancel() == 1


async def test_a_failing_publish_is_logged_and_the_next_home_is_still_published():
    refresh, homes, follow_ups = refresher()

    async def flaky(client: Any, user: str) -> None:
        if user == "U_ALICE":
            raise RuntimeError("slack is down")
        homes.published.append(user)

    refresh.publish = flaky
    for user in ("U_ALICE", "U_BOB"):
        refresh.shown(user, [])
        refresh.changed(request(user))
    assert await follow_ups.drain(5) == 0
    assert homes.published == ["U_BOB"]


async def test_the_homes_remembered_are_bounded_oldest_first():
    follow_ups = FollowUps()
    engine: Any = SimpleNamespace(life=SimpleNamespace(follow_ups=follow_ups), directory=None)
    homes = Homes()
    refresh = HomeRefresh(engine, client=None, publish=homes, remembered=2)  # type: ignore[arg-type]
    for user in ("U_ALICE", "U_BOB", "U_CAROL"):
        refresh.shown(user, [])
    for user in ("U_ALICE", "U_BOB", "U_CAROL"):
        refresh.changed(request(user))
    assert await follow_ups.drain(5) == 0
    assert homes.published == ["U_BOB", "U_CAROL"]


async def test_a_message_edit_cut_short_at_shutdown_starts_no_home_refresh_after_the_stop():
    # The stop cancels the follow-ups still running; an edit cut short still tells the refresh its request
    # changed (SlackNotifier.publish does, in `finally`). Nothing may start then: the clients and the
    # database are closed right after.
    refresh, homes, follow_ups = refresher()
    refresh.shown("U_ALICE", [])

    async def edit_cut_short() -> None:
        try:
            await asyncio.Event().wait()  # Slack is slow: the edit is still on its way at the stop
        finally:
            refresh.changed(request("U_ALICE"))

    follow_ups.add("rU_ALICE0", edit_cut_short, lane=Lane.MESSAGE, what="publish")
    for _ in range(3):
        await asyncio.sleep(0)
    assert await follow_ups.cancel() == 1
    for _ in range(20):
        await asyncio.sleep(0)
    assert homes.published == [] and follow_ups.pending() == 0
