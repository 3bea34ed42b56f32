"""A small async cache with a time-to-live, so a burst of hook calls does not hit rate limits."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Hashable
from typing import Any


class TTLCache:
    """Memoises coroutine results per key for `ttl` seconds; concurrent misses share one call."""

    def __init__(
        self, ttl: float, *, max_entries: int = 10_000, monotonic: Callable[[], float] = time.monotonic
    ) -> None:
        self.ttl = ttl
        self.max_entries = max_entries
        self._now = monotonic
        self._values: dict[Hashable, tuple[float, Any]] = {}
        self._inflight: dict[Hashable, asyncio.Future[Any]] = {}

    async def get_or_load(self, key: Hashable, load: Callable[[], Awaitable[Any]]) -> Any:
        """Return the cached value for `key`, or await `load()` once and cache its result."""
        hit = self._values.get(key)
        if hit is not None and hit[0] > self._now():
            return hit[1]
        pending = self._inflight.get(key)
        if pending is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._inflight[key] = future
        try:
            value = await load()
        except BaseException as exc:
            # Errors are not cached: the next caller tries again. Waiters see the same error.
            future.set_exception(exc)
            future.exception()  # mark retrieved so an unawaited future does not warn
            raise
        finally:
            self._inflight.pop(key, None)
        if len(self._values) >= self.max_entries:
            self._values.clear()
        self._values[key] = (self._now() + self.ttl, value)
        future.set_result(value)
        return value

    def put(self, key: Hashable, value: Any) -> None:
        """Store a value read elsewhere (a fresh read refreshes the cache for later display)."""
        if len(self._values) >= self.max_entries:
            self._values.clear()
        self._values[key] = (self._now() + self.ttl, value)

    def clear(self) -> None:
        """Forget every cached value."""
        self._values.clear()
