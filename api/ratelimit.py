"""Requests per token: a token bucket per key, refilled continuously, on an injected clock.

Each key (a token's id, or the caller's address when no well-formed token is shown) holds up to
`capacity` calls and regains `capacity` per `period`. An empty bucket answers how long until the
next call is allowed (for `Retry-After`). Small on purpose: the maintained limiters read the wall
clock themselves (tests could not move time) and none keeps a token bucket in memory as this does.
Full buckets are forgotten once there are more than `max_keys`, so garbage keys cannot grow memory.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass


@dataclass
class _Bucket:
    tokens: float
    at: float


class RateLimiter:
    """Token buckets by key; `take(key)` returns 0 when allowed, else the seconds to wait."""

    def __init__(self, capacity: int, period: float, *, now: Callable[[], float], max_keys: int = 10_000) -> None:
        if capacity < 1 or period <= 0:
            raise ValueError("a rate limit needs a capacity of at least 1 and a positive period")
        self.capacity = capacity
        self.rate = capacity / period  # tokens regained per second
        self._now = now
        self._max_keys = max_keys
        self._buckets: dict[str, _Bucket] = {}

    def take(self, key: str) -> float:
        """Spend one call of `key`'s bucket: 0.0 when allowed, else the seconds until one is available."""
        now = self._now()
        bucket = self._buckets.get(key)
        if bucket is None:
            self._forget_full(now)
            bucket = self._buckets[key] = _Bucket(float(self.capacity), now)
        # A clock that steps back never adds calls; one that steps forward refills at most to capacity.
        elapsed = max(0.0, now - bucket.at)
        bucket.tokens = min(float(self.capacity), bucket.tokens + elapsed * self.rate)
        bucket.at = now
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return 0.0
        return (1.0 - bucket.tokens) / self.rate

    @staticmethod
    def retry_after(wait: float) -> str:
        """A Retry-After value: whole seconds, at least 1."""
        return str(max(1, math.ceil(wait)))

    def _forget_full(self, now: float) -> None:
        if len(self._buckets) < self._max_keys:
            return
        for key, bucket in list(self._buckets.items()):
            if bucket.tokens + max(0.0, now - bucket.at) * self.rate >= self.capacity:
                del self._buckets[key]
        if len(self._buckets) >= self._max_keys:
            # Everyone is mid-burst: drop the oldest; the worst case is a refilled bucket for one key.
            oldest = min(self._buckets, key=lambda k: self._buckets[k].at)
            del self._buckets[oldest]
