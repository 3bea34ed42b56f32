"""What the engine reports about itself, as a port: status changes, strategy calls, revocation lateness.

Core calls a `Metrics`; the composition root gives it the Prometheus adapter (`handlers.metrics`),
and everything else (unit tests, tools) gets `NO_METRICS`, which records nothing. Core never
imports a metrics library: the names, labels and buckets belong to the adapter
(docs/operations.md lists them).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Collection, Mapping
from contextlib import asynccontextmanager
from typing import Any, Protocol

from core.models import AccessRequest, AuditEvent, RequestStatus
from core.ports import RequestStore


class Metrics(Protocol):
    """Receives the engine's measurements; an implementation must never raise."""

    def request_status(self, flow: str, status: str) -> None:
        """A request of `flow` entered `status` (created as pending, approved, granted, revoked, …)."""
        ...

    def strategy_call(self, strategy: str, operation: str, seconds: float, *, failed: bool) -> None:
        """One call of a strategy's `operation` ('grant', 'revoke') took `seconds` and failed or not."""
        ...

    def revocation_lateness(self, seconds: float) -> None:
        """A grant ended `seconds` after its end time (0 or more)."""
        ...

    def lease_claimed(self, kind: str) -> None:
        """This replica took a lease of `kind` ('request', 'access', 'job', 'audit', 'submission', 'warning'): a job
        it claimed."""
        ...


class NoMetrics:
    """Metrics that record nothing (tests and tools without a /metrics endpoint)."""

    def request_status(self, flow: str, status: str) -> None:
        """Record nothing."""

    def strategy_call(self, strategy: str, operation: str, seconds: float, *, failed: bool) -> None:
        """Record nothing."""

    def revocation_lateness(self, seconds: float) -> None:
        """Record nothing."""

    def lease_claimed(self, kind: str) -> None:
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


class MeteredRequests:
    """A RequestStore that reports every request created and every status it enters to `metrics`
    (after the write committed: a refused compare-and-set counts nothing). Everything else is the
    wrapped store's."""

    def __init__(self, inner: RequestStore, metrics: Metrics) -> None:
        self._inner = inner
        self._metrics = metrics

    async def create(self, request: AccessRequest, audit: AuditEvent) -> AccessRequest:
        """Create, then count the request's first status."""
        created = await self._inner.create(request, audit)
        self._metrics.request_status(created.flow, created.status.value)
        return created

    async def transition(
        self,
        request_id: str,
        expected: RequestStatus | Collection[RequestStatus],
        new: RequestStatus,
        *,
        changes: Mapping[str, Any] | None = None,
        audit: AuditEvent,
    ) -> AccessRequest:
        """Change the status (compare-and-set), then count the status entered."""
        moved = await self._inner.transition(request_id, expected, new, changes=changes or {}, audit=audit)
        self._metrics.request_status(moved.flow, moved.status.value)
        return moved

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)
