"""The emulator's per-method rate limits behave as Slack's tiers: N calls in a window, then 429 + Retry-After."""

from __future__ import annotations

import pytest
from slack_sdk.errors import SlackApiError

from sandbox.slack.throttle import TIERS, Throttle


class Seconds:
    """A monotonic clock the test moves."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_tier_allows_its_calls_per_minute_then_asks_to_retry_when_the_oldest_slot_frees():
    clock = Seconds()
    throttle = Throttle(TIERS[3], 60.0, clock)
    assert [throttle.admit() for _ in range(50)] == [None] * 50
    clock.now += 20.5
    assert throttle.admit() == 40  # the first call leaves the window 39.5 s from now: rounded up
    clock.now += 39.5
    assert throttle.admit() is None and throttle.admit() is None
    assert throttle.refused == 1


def test_the_window_slides_rather_than_resetting_all_at_once():
    clock = Seconds()
    throttle = Throttle(2, 10.0, clock)
    assert throttle.admit() is None
    clock.now += 5
    assert throttle.admit() is None
    assert throttle.admit() == 5
    clock.now += 5
    assert throttle.admit() is None  # the first call left; the second still counts
    assert throttle.admit() == 5


async def test_a_throttled_method_answers_429_ratelimited_with_retry_after_and_other_methods_are_untouched(slack, web):
    slack.throttle("chat.update", limit=1, per=60.0)
    posted = await web.chat_postMessage(channel="C_ALERTS", text="one")
    await web.chat_update(channel="C_ALERTS", ts=posted["ts"], text="two")
    with pytest.raises(SlackApiError) as refused:
        await web.chat_update(channel="C_ALERTS", ts=posted["ts"], text="three")
    assert refused.value.response.status_code == 429 and refused.value.response["error"] == "ratelimited"
    assert 59 <= int(refused.value.response.headers["Retry-After"]) <= 60
    assert (await web.chat_postMessage(channel="C_ALERTS", text="not throttled"))["ok"]
    assert slack.message("C_ALERTS", posted["ts"]).text == "two"
    assert slack.problems == []
    slack.clear_faults("chat.update")
    assert (await web.chat_update(channel="C_ALERTS", ts=posted["ts"], text="three"))["ok"]


def test_a_throttle_needs_a_tier_or_a_limit(slack):
    with pytest.raises(ValueError):
        slack.throttle("chat.update")
    with pytest.raises(ValueError):
        slack.throttle("chat.update", tier=3, limit=5)
