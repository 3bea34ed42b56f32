"""Slack's per-method rate limits: at most `limit` calls of a method in any `per` seconds, then 429.

Slack counts each Web API method per workspace and app in tiers (Tier 1: 1+ per minute, Tier 2: 20+,
Tier 3: 50+, Tier 4: 100+; chat.update is Tier 3) and answers a call over the limit with HTTP 429,
`{"ok": false, "error": "ratelimited"}` and `Retry-After: <seconds>` until a slot frees. Tests pass a
shorter `per` to keep the tier's shape in seconds rather than minutes.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

TIERS = {1: 1, 2: 20, 3: 50, 4: 100}  # calls per minute


@dataclass
class Throttle:
    """A sliding window of accepted calls of one method."""

    limit: int
    per: float = 60.0
    clock: Callable[[], float] = time.monotonic
    accepted: deque[float] = field(default_factory=deque)
    refused: int = 0

    def admit(self) -> int | None:
        """Take a slot and return None, or return the Retry-After seconds (1 or more) when none is free."""
        now = self.clock()
        while self.accepted and self.accepted[0] <= now - self.per:
            self.accepted.popleft()
        if len(self.accepted) < self.limit:
            self.accepted.append(now)
            return None
        self.refused += 1
        return max(1, math.ceil(self.accepted[0] + self.per - now))
