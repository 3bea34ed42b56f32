"""Delivering the audit trail to its destinations: one worker per destination, reading the outbox.

Each worker reads the events after its destination's cursor (a batch of at most `batch_size`),
hands them to the sink with the chain head, and moves the cursor past what the sink acknowledged.
Nothing here runs on a request's path: a request only writes its audit row (storage), so a
destination that is down never slows or blocks one. Guarantees (docs/audit.md):

- at least once, in seq order, with the same `event_id` on a re-delivery (a crash between the
  sink's acknowledgement and the cursor's move re-sends that batch);
- a failure is retried with capped exponential back-off (`AUDIT_DELIVERY`), for ever;
- a refusal (a 4xx other than 408/429: bad key, bad address, payload refused) is alerted once with the
  destination's scrubbed answer and halts that destination until jitbot restarts: retrying the same
  request would be refused the same way. Its backlog is kept and delivered after the fix;
- a backlog older than the destination's `alert_after` is alerted once per episode.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Protocol

import structlog

from core.audit_events import ChainHead
from core.claims import Claims
from core.clock import Clock
from core.ports import Alert, AuditOutbox, DestinationStatus
from core.retry import Backoff, Sleep
from core.secrets import SecretRegistry

log = structlog.get_logger("jitbot.audit")

AUDIT_DELIVERY = Backoff(first=1.0, factor=2.0, cap=300.0, attempts=None)
POLL_SECONDS = 0.2  # how often an idle worker looks for new events


class DeliveryFailed(Exception):
    """A delivery that may succeed if tried again (outage, time-out, 5xx, 408, 429, throttling)."""


class DeliveryRefused(Exception):
    """The destination refused the events for good (a 4xx): retrying the same request cannot help."""


class BatchTooLarge(DeliveryRefused):
    """The destination refused the batch for its size: the worker halves the batch and tries again."""


class AuditSink(Protocol):
    """One destination: takes a batch of event documents (in seq order) and the chain head."""

    name: str
    batch_size: int
    alert_after: timedelta

    async def open(self) -> None: ...

    async def aclose(self) -> None: ...

    async def deliver(self, events: Sequence[Mapping[str, Any]], head: ChainHead) -> int:
        """Deliver `events`; return how many, from the first, the destination has (all, normally)."""
        ...


AlertFn = Callable[[Alert], Awaitable[Any]]


@dataclass
class _Worker:
    sink: AuditSink
    batch_size: int
    halted: str | None = None
    task: asyncio.Task[None] | None = None


class AuditDelivery:
    """Runs one delivery worker per sink; see the module docstring."""

    def __init__(
        self,
        outbox: AuditOutbox,
        sinks: Sequence[AuditSink],
        *,
        alert: AlertFn,
        clock: Clock,
        secrets: SecretRegistry,
        backoff: Backoff = AUDIT_DELIVERY,
        poll_seconds: float = POLL_SECONDS,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self.outbox = outbox
        self._workers = {sink.name: _Worker(sink, sink.batch_size) for sink in sinks}
        self._alert = alert
        self._clock = clock
        self._secrets = secrets
        self._backoff = backoff
        self._poll = poll_seconds
        self._sleep = sleep
        # With replicas: one delivers a destination's next batch at a time (a lease per destination), so
        # they neither send the same events side by side nor race over the cursor.
        self.claims: Claims | None = None

    @property
    def names(self) -> list[str]:
        """The destinations, in the order they were configured."""
        return list(self._workers)

    async def start(self) -> None:
        """Open every sink, create missing cursors and start the workers."""
        await self.outbox.ensure(self.names, self._clock.now())
        for worker in self._workers.values():
            try:
                await worker.sink.open()
            except Exception:  # a sink that cannot open now fails its deliveries, which are retried
                log.exception("audit.sink_open_failed", destination=worker.sink.name)
            worker.task = asyncio.create_task(self._run(worker), name=f"audit:{worker.sink.name}")

    async def stop(self) -> None:
        """Stop the workers (a batch in flight is re-sent at the next start) and close the sinks."""
        tasks = [w.task for w in self._workers.values() if w.task is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for worker in self._workers.values():
            worker.task = None
            try:
                await worker.sink.aclose()
            except Exception:
                log.exception("audit.sink_close_failed", destination=worker.sink.name)

    async def status(self) -> list[DestinationStatus]:
        """Each destination's cursor, backlog and last error."""
        return await self.outbox.status(self.names)

    async def backlog(self) -> dict[str, int]:
        """Events not yet delivered, per destination."""
        return {s.name: s.backlog for s in await self.status()}

    def halted(self, name: str) -> str | None:
        """Why a destination was halted (a refusal), or None while it runs."""
        return self._workers[name].halted

    async def deliver_once(self, name: str) -> int:
        """One delivery attempt for `name`: the events acknowledged (0 when there was nothing to send).

        Raises DeliveryFailed / DeliveryRefused as the sink does; the cursor moves past what was acknowledged.
        """
        claims = self.claims
        if claims is None:
            return await self._deliver_batch(name)
        lease = f"audit:{name}"
        if not await claims.try_take(lease):
            return 0  # another replica is delivering this destination's next batch
        try:
            return await self._deliver_batch(name)
        finally:
            await claims.give_back(lease)

    async def _deliver_batch(self, name: str) -> int:
        worker = self._workers[name]
        position = await self.outbox.position(name)
        events = await self.outbox.after(position, worker.batch_size)
        if not events:
            return 0
        head = await self.outbox.head()
        delivered = await worker.sink.deliver([e.document() for e in events], head)
        delivered = max(0, min(delivered, len(events)))
        if delivered:
            await self.outbox.advance(name, events[delivered - 1].seq, self._clock.now())
        if delivered < len(events):
            raise DeliveryFailed(f"the destination took {delivered} of {len(events)} events; the rest are re-sent")
        return delivered

    async def _run(self, worker: _Worker) -> None:
        name = worker.sink.name
        failures = 0
        while True:
            try:
                delivered = await self.deliver_once(name)
            except BatchTooLarge as error:
                if worker.batch_size > 1:
                    worker.batch_size = max(1, worker.batch_size // 2)
                    log.warning("audit.batch_too_large", destination=name, batch_size=worker.batch_size)
                    continue
                await self._halt(worker, error)
                return
            except DeliveryRefused as error:
                await self._halt(worker, error)
                return
            except asyncio.CancelledError:
                raise
            except Exception as error:  # outages and anything unforeseen: retried, never dropped
                failures += 1
                message = self._secrets.scrub(_describe(error))
                log.warning("audit.delivery_failed", destination=name, failures=failures, error=message)
                await self._record_failure(worker, message)
                await self._sleep(self._backoff.delay(failures))
                continue
            if failures:
                log.info("audit.delivery_recovered", destination=name, after_failures=failures)
            failures = 0
            if delivered < worker.batch_size:  # caught up: look again shortly
                await self._sleep(self._poll)

    async def _record_failure(self, worker: _Worker, message: str) -> None:
        name = worker.sink.name
        try:
            await self.outbox.failed(name, message, self._clock.now())
            (status,) = await self.outbox.status([name])
            await self._check_lag(worker, status)
        except Exception:  # the database itself failing: logged, and the loop retries after its pause
            log.exception("audit.record_failure_failed", destination=name)

    async def _check_lag(self, worker: _Worker, status: DestinationStatus) -> None:
        if status.alerted_at is not None or status.oldest_undelivered_at is None:
            return
        since = status.oldest_undelivered_at
        if status.first_seen_at is not None and status.first_seen_at > since:
            since = status.first_seen_at  # a new destination catching up on history is not late
        now = self._clock.now()
        if now - since < worker.sink.alert_after:
            return
        minutes = int((now - since).total_seconds() // 60)
        sent = await self._send_alert(
            Alert(
                f"Audit destination {status.name} is {minutes} min behind ({status.backlog} events not delivered)",
                error=status.last_error,
                action="jitbot keeps retrying and delivers the backlog in order once the destination answers.",
            )
        )
        if sent:
            await self.outbox.alerted(status.name, now)

    async def _halt(self, worker: _Worker, error: Exception) -> None:
        name = worker.sink.name
        message = self._secrets.scrub(_describe(error))
        worker.halted = message
        log.error("audit.destination_refused", destination=name, error=message)
        try:
            await self.outbox.failed(name, f"refused, delivery stopped: {message}", self._clock.now())
        except Exception:
            log.exception("audit.record_failure_failed", destination=name)
        if await self._send_alert(
            Alert(
                f"Audit destination {name} refused the events",
                error=message,
                action=(
                    "Delivery to it is stopped (retrying would be refused the same way); its backlog is kept. "
                    "Fix the destination or its settings and restart jitbot: it then delivers everything in order."
                ),
            )
        ):
            try:
                await self.outbox.alerted(name, self._clock.now())
            except Exception:
                log.exception("audit.record_failure_failed", destination=name)

    async def _send_alert(self, alert: Alert) -> bool:
        try:
            await self._alert(alert)
            return True
        except Exception:
            log.exception("alert.failed", what="audit destination")
            return False


def _describe(error: BaseException) -> str:
    text = str(error).strip()
    return text or type(error).__name__
