"""`GET /metrics`: the bot's Prometheus metrics, one registry per running bot.

`PrometheusMetrics` implements `core.metrics.Metrics` (status changes, strategy calls, revocation
lateness), counts
Slack Web API errors and 429s through `SlackCallCounter` (a slack_sdk retry handler that only
looks), and reads what the database knows (requests by flow and status, live grants) when it is
scraped. docs/operations.md lists every metric with its labels.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from slack_sdk.http_retry.async_handler import AsyncRetryHandler
from slack_sdk.http_retry.request import HttpRequest
from slack_sdk.http_retry.response import HttpResponse
from slack_sdk.http_retry.state import RetryState

RequestCounts = Callable[[], Awaitable[Iterable[tuple[str, str, int]]]]
"""Reads (flow, status, count) of the open requests: storage.stats.request_counts, bound to a store."""
AuditBacklog = Callable[[], Awaitable[Mapping[str, int]]]
"""Reads the events not yet delivered, per audit destination: core.audit_delivery.AuditDelivery.backlog."""

# Lateness of a revocation: the target is 50 ms at p99 with 10,000 live grants, 2 s for 1,000 at once.
LATENESS_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 300.0)
STRATEGY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
_SLACK_ERROR = re.compile(r"[a-z0-9_]{1,64}")


class PrometheusMetrics:
    """The metrics of one bot, in a registry of its own (two bots in one process never mix)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        registry = self.registry
        self._requests = Gauge(
            "jitbot_requests",
            "Open requests (pending, approved, granted) in the database, by flow and status.",
            ["flow", "status"],
            registry=registry,
        )
        self._entered = Counter(
            "jitbot_request_transitions",
            "Requests that entered each status (created as pending, approved, granted, revoked, …), by flow.",
            ["flow", "status"],
            registry=registry,
        )
        self._live = Gauge(
            "jitbot_live_grants", "Grants live now (status granted), by flow.", ["flow"], registry=registry
        )
        self._lateness = Histogram(
            "jitbot_revocation_lateness_seconds",
            "How long after its end time each grant was revoked.",
            buckets=LATENESS_BUCKETS,
            registry=registry,
        )
        labels = ["strategy", "operation"]
        self._calls = Counter(
            "jitbot_strategy_calls", "Strategy calls, by strategy type and operation.", labels, registry=registry
        )
        self._errors = Counter(
            "jitbot_strategy_errors",
            "Strategy calls that failed, by strategy type and operation.",
            labels,
            registry=registry,
        )
        self._seconds = Histogram(
            "jitbot_strategy_call_seconds",
            "Strategy call latency, by strategy type and operation.",
            labels,
            buckets=STRATEGY_BUCKETS,
            registry=registry,
        )
        self._slack_errors = Counter(
            "jitbot_slack_api_errors",
            "Slack Web API answers that were errors (each attempt), by method and error.",
            ["method", "error"],
            registry=registry,
        )
        self._slack_limited = Counter(
            "jitbot_slack_rate_limited",
            "Slack Web API answers 429 (rate limited; retried after Retry-After), by method.",
            ["method"],
            registry=registry,
        )
        self._follow_ups = Gauge(
            "jitbot_follow_ups_pending",
            "Notifications (message posts and edits, DMs, after_* hooks, App Home refreshes) queued behind"
            " recorded grants and revocations.",
            registry=registry,
        )
        self._audit_backlog = Gauge(
            "jitbot_audit_backlog_events",
            "Audit events written but not yet delivered, by destination (read from the database at scrape time).",
            ["destination"],
            registry=registry,
        )
        self._claimed = Counter(
            "jitbot_replica_claims",
            "Leases this replica took (PostgreSQL replicas): the work it claimed, by kind "
            "(request: a decision, grant, revocation or expiry; access: one access's grant or revoke; "
            "job: a periodic job's tick; audit: a delivery batch; submission: a modal made into a request; "
            "warning: an end warning waiting behind this replica's DMs).",
            ["kind"],
            registry=registry,
        )
        self._leases_held = Gauge(
            "jitbot_replica_leases_held",
            "Leases this replica holds right now (work in progress on it).",
            registry=registry,
        )
        self._read_leases_held: Callable[[], int] | None = None
        self._request_counts: RequestCounts | None = None
        self._follow_ups_pending: Callable[[], int] | None = None
        self._read_audit_backlog: AuditBacklog | None = None

    def watch(self, *, request_counts: RequestCounts, follow_ups_pending: Callable[[], int]) -> None:
        """Read these at scrape time: the stored requests, and the engine's queued follow-ups."""
        self._request_counts = request_counts
        self._follow_ups_pending = follow_ups_pending

    def watch_audit(self, backlog: AuditBacklog) -> None:
        """Read each audit destination's backlog at scrape time."""
        self._read_audit_backlog = backlog

    def watch_leases(self, held: Callable[[], int]) -> None:
        """Read how many leases this replica holds at scrape time."""
        self._read_leases_held = held

    # ── core.metrics.Metrics ─────────────────────────────────────────────────────────────────

    def request_status(self, flow: str, status: str) -> None:
        """Count a request entering `status`."""
        self._entered.labels(flow, status).inc()

    def strategy_call(self, strategy: str, operation: str, seconds: float, *, failed: bool) -> None:
        """Count and time one strategy call."""
        self._calls.labels(strategy, operation).inc()
        self._seconds.labels(strategy, operation).observe(seconds)
        if failed:
            self._errors.labels(strategy, operation).inc()

    def revocation_lateness(self, seconds: float) -> None:
        """Observe how late a grant ended."""
        self._lateness.observe(seconds)

    def lease_claimed(self, kind: str) -> None:
        """Count one lease this replica took."""
        self._claimed.labels(kind).inc()

    # ── Slack ────────────────────────────────────────────────────────────────────────────────

    def slack_answer(self, method: str, *, status: int | None, error: str | None) -> None:
        """Count one Slack Web API answer: a 429, or an error (`error` is Slack's code, or the exception's name)."""
        if status == 429:
            self._slack_limited.labels(method).inc()
        elif error is not None:
            self._slack_errors.labels(method, error if _SLACK_ERROR.fullmatch(error) else "other").inc()

    # ── the endpoint ─────────────────────────────────────────────────────────────────────────

    async def refresh(self) -> None:
        """Update what is read at scrape time: open requests, queued follow-ups, each destination's audit backlog."""
        if self._follow_ups_pending is not None:
            self._follow_ups.set(self._follow_ups_pending())
        if self._read_leases_held is not None:
            self._leases_held.set(self._read_leases_held())
        if self._read_audit_backlog is not None:
            backlog = await self._read_audit_backlog()
            self._audit_backlog.clear()
            for destination, events in backlog.items():
                self._audit_backlog.labels(destination).set(events)
        if self._request_counts is None:
            return
        rows = list(await self._request_counts())
        self._requests.clear()
        self._live.clear()
        for flow, status, count in rows:
            self._requests.labels(flow, status).set(count)
            if status == "granted":
                self._live.labels(flow).set(count)

    async def handle(self, _request: web.Request) -> web.Response:
        """GET /metrics: the Prometheus text format."""
        await self.refresh()
        body = generate_latest(self.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


class SlackCallCounter(AsyncRetryHandler):
    """A slack_sdk retry handler that never retries: it sees every answer first and counts errors and 429s.

    Put first in the client's `retry_handlers`; the handlers after it do the retrying.
    """

    def __init__(self, metrics: PrometheusMetrics) -> None:
        super().__init__(max_retry_count=0)
        self.metrics = metrics

    async def can_retry_async(
        self,
        *,
        state: RetryState,
        request: HttpRequest,
        response: HttpResponse | None = None,
        error: Exception | None = None,
    ) -> bool:
        """Count the answer; always False."""
        method = request.url.split("?", 1)[0].rstrip("/").rsplit("/", 1)[-1]
        if error is not None:
            self.metrics.slack_answer(method, status=None, error=type(error).__name__.lower())
        elif response is not None:
            body: Any = response.body
            failed = response.status_code >= 400 or (isinstance(body, dict) and body.get("ok") is False)
            code = body.get("error") if isinstance(body, dict) else None
            self.metrics.slack_answer(
                method,
                status=response.status_code,
                error=(str(code) if code else f"http_{response.status_code}") if failed else None,
            )
        return False
