"""The per-token token bucket: never more calls than its capacity plus what time has refilled, and a
`Retry-After` that is enough, checked over any sequence of calls and clock moves."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from api.ratelimit import RateLimiter
from tests.properties.conftest import property_settings


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def now(self) -> float:
        return self.t


steps = st.lists(
    st.tuples(st.sampled_from(["a", "b", "c"]), st.floats(min_value=-5, max_value=30, allow_nan=False)), max_size=200
)


@settings(property_settings(), max_examples=min(property_settings().max_examples, 200))
@given(capacity=st.integers(1, 20), period=st.floats(1, 120), steps=steps)
def test_no_key_gets_more_than_its_capacity_plus_what_time_refilled(capacity, period, steps):
    clock = Clock()
    limiter = RateLimiter(capacity, period, now=clock.now)
    allowed: dict[str, int] = {}
    forward = 0.0  # only forward moves of the clock may refill
    for key, move in steps:
        clock.t += move
        forward += max(0.0, move)
        if limiter.take(key) == 0.0:
            allowed[key] = allowed.get(key, 0) + 1
    for count in allowed.values():
        assert count <= capacity + forward * capacity / period + 1e-6


@settings(property_settings(), max_examples=min(property_settings().max_examples, 200))
@given(capacity=st.integers(1, 20), period=st.floats(1, 120), burst=st.integers(0, 40))
def test_waiting_the_answered_time_is_always_enough(capacity, period, burst):
    clock = Clock()
    limiter = RateLimiter(capacity, period, now=clock.now)
    for _ in range(burst):
        limiter.take("k")
    wait = limiter.take("k")
    if wait > 0:
        clock.t += wait + 1e-9
        assert limiter.take("k") == 0.0
        assert int(RateLimiter.retry_after(wait)) >= wait


def test_a_full_burst_then_one_call_per_refill():
    clock = Clock()
    limiter = RateLimiter(3, 60, now=clock.now)
    assert [limiter.take("k") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert limiter.take("k") == pytest.approx(20.0)
    assert limiter.take("other") == 0.0  # per key
    clock.t += 20
    assert limiter.take("k") == 0.0 and limiter.take("k") > 0


def test_memory_stays_bounded_whatever_keys_arrive():
    clock = Clock()
    limiter = RateLimiter(2, 60, now=clock.now, max_keys=100)
    for n in range(10_000):
        limiter.take(f"peer:{n}")
    assert len(limiter._buckets) <= 100


def test_a_limit_needs_a_capacity_and_a_period():
    for capacity, period in ((0, 60), (1, 0)):
        with pytest.raises(ValueError):
            RateLimiter(capacity, period, now=lambda: 0.0)
