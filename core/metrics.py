"""What the engine reports about itself, as a port: strategy calls and revocation lateness.

Core calls a `Metrics`; the composition root gives it the Prometheus adapter (`handlers.metrics`),
and everything else (unit tests, tools) gets `NO_METRICS`, which records nothing. Core never
imports a metrics library: the names, labels and buckets belong to the adapter
(docs/operations.md lists them).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Protocol


class Metrics(Protocol):
    """Receives the engine's measurements; an implementation must never raise."""

    def strategy_call(self, strategy: str, operation: str, seconds: float, *, failed: bool) -> None:
        """One call of a strategy's `operation` ('grant', 'revoke') took `seconds` and failed or not."""
        ...

    def revocation_lateness(self, seconds: float) -> None:
        """A grant ended `seconds` after its end time (0 or more)."""
        ...


class NoMetrics:
    """Metrics that record nothing (tests and tools without a /metrics endpoint)."""

    def strategy_call(self, strategy: str, operation: str, seconds: float, *, failed: bool) -> None:
        """Record nothing."""

    def revocation_lateness(self, seconds: float) -> None:
        """Record nothing."""


NO_METRICS = NoMetrics()


@asynccontextmanager
async def timed_call(metrics: Metrics, strategy: str, operation: str) -> AsyncIterator[None]:
    """Time the strategy call in the block (wall time, not the engine's clock: it measures the target
    system) and report it as failed when the block raises."""
    started = time.perf_counter()
    failed = True
    try:
        yield
        failed = False
    finally:
        metrics.strategy_call(strategy, operation, time.perf_counter() - started, failed=failed)
